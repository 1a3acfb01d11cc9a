"""`manage.py replay_jobs`: filters, --dry-run, bad input, and a replay that runs once on a worker."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from core.jobs.queues import Queue
from core.models import DeadLetter, DeadLetterStatus
from tests import jobs, live
from tests.sync.dead_letters import (
    dead_letter_for_real,
    fixed,
    make_letter,
    queue_length,
    running_worker,
    succeeded_replay,
    unique_key,
    wait_for_outcomes,
)


def replay_jobs(*args: str) -> str:
    out = StringIO()
    call_command("replay_jobs", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def replayed(*letters: DeadLetter) -> list[bool]:
    return [DeadLetter.objects.get(pk=x.pk).status == DeadLetterStatus.REPLAYED for x in letters]


@pytest.mark.django_db
class TestFilters:
    def test_queue_task_and_org_select_the_letters_to_replay(self, owner, outsider):
        social = make_letter(owner.org, queue=Queue.SOCIAL.value)
        other_task = make_letter(owner.org, task="tests.jobs.fail_always")
        globex = make_letter(outsider.org)
        output = replay_jobs("--queue", "social")
        assert replayed(social, other_task, globex) == [True, False, False]
        assert f"replayed {social.pk} tests.jobs.fail_until_fixed [social, acme, failed " in output
        assert output.splitlines()[-1] == (
            "1 replayed, 0 skipped (already succeeded on replay), 0 refused, of 1 selected."
        )
        replay_jobs("--task", "tests.jobs.fail_always")
        assert replayed(other_task, globex) == [True, False]
        replay_jobs("--org", str(outsider.org.pk))
        assert replayed(globex) == [True]
        assert "0 replayed" in replay_jobs("--org", "acme")  # acme's are all replayed now

    def test_since_limit_status_and_ids(self, owner):
        now = timezone.now()
        week_old = make_letter(owner.org, failed_at=now - timedelta(days=7))
        day_old = make_letter(owner.org, failed_at=now - timedelta(days=1))
        hour_old = make_letter(owner.org, failed_at=now - timedelta(hours=1))
        discarded = make_letter(owner.org, status=DeadLetterStatus.DISCARDED)

        replay_jobs("--since", "2h")
        assert replayed(week_old, day_old, hour_old) == [False, False, True]
        replay_jobs("--since", (now - timedelta(days=3)).isoformat(), "--limit", "5")
        assert replayed(week_old, day_old) == [False, True]
        output = replay_jobs("--limit", "1")
        assert replayed(week_old) == [True]
        assert output.count("\nreplayed ") + output.startswith("replayed ") == 1
        replay_jobs()  # dead ones only by default: the discarded one stays
        assert replayed(discarded) == [False]
        replay_jobs("--status", "discarded")
        assert replayed(discarded) == [True]
        # --id alone takes any status: the replayed letter is replayed again.
        replay_jobs("--id", str(hour_old.pk), "--id", str(day_old.pk))
        assert len(DeadLetter.objects.get(pk=hour_old.pk).replays) == 2
        assert len(DeadLetter.objects.get(pk=week_old.pk).replays) == 1

    def test_a_letter_that_succeeded_on_replay_is_skipped_unless_forced(self, owner):
        done = make_letter(owner.org, replays=succeeded_replay())
        output = replay_jobs("--id", str(done.pk))
        assert f"skipped {done.pk}" in output and "already succeeded on replay" in output
        assert output.splitlines()[-1].startswith("0 replayed, 1 skipped")
        assert len(DeadLetter.objects.get(pk=done.pk).replays) == 1
        output = replay_jobs("--id", str(done.pk), "--force")
        assert output.splitlines()[-1].startswith("1 replayed, 0 skipped")
        replays = DeadLetter.objects.get(pk=done.pk).replays
        assert len(replays) == 2 and replays[-1]["by"] == "manage.py replay_jobs"

    def test_a_refused_letter_makes_the_command_fail_after_the_summary(self, owner):
        gone = make_letter(owner.org, task="crm.no_such_task")
        fine = make_letter(owner.org)
        out = StringIO()
        with pytest.raises(CommandError, match=r"1 dead letter\(s\) refused: no task 'crm\.no_such_task'"):
            call_command("replay_jobs", stdout=out)
        assert f"refused {gone.pk}" in out.getvalue()
        assert "1 replayed, 0 skipped (already succeeded on replay), 1 refused" in out.getvalue()
        assert replayed(fine, gone) == [True, False]

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--id", "not-a-uuid"], "is not a dead letter id"),
            (["--queue", "nope"], "Unknown queue 'nope'; one of: events"),
            (["--status", "zombie"], "Unknown status 'zombie'"),
            (["--org", "no-such-org"], "No organization 'no-such-org'"),
            (["--since", "last tuesday"], "relative age like 30m"),
            (["--since", "2h30"], "Not an ISO 8601 date-time"),
            (["--limit", "0"], "--limit must be a positive integer"),
            (["--limit", "ten"], "--limit must be a positive integer"),
            (["--task", "tests.jobs\x00"], "--task cannot contain a NUL character"),
        ],
    )
    def test_bad_input_is_a_clear_command_error_and_replays_nothing(self, owner, args, message):
        letter = make_letter(owner.org)
        with pytest.raises(CommandError, match=message):
            replay_jobs(*args)
        assert replayed(letter) == [False]


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_dry_run_enqueues_nothing_and_changes_nothing(owner):
    live.purge()
    letters = [make_letter(owner.org), make_letter(owner.org, replays=succeeded_replay())]
    output = replay_jobs("--dry-run")
    assert f"would replay {letters[0].pk}" in output
    assert f"would skip (already succeeded on replay) {letters[1].pk}" in output
    assert output.splitlines()[-1] == (
        "dry run: 1 would be replayed, 1 skipped, of 2 selected; nothing was enqueued."
    )
    assert queue_length() == 0
    assert [DeadLetter.objects.get(pk=x.pk).replays for x in letters] == [[], letters[1].replays]
    assert DeadLetter.objects.get(pk=letters[0].pk).status == DeadLetterStatus.DEAD
    # The same without --dry-run does reach the broker (no worker here to take it).
    replay_jobs()
    assert queue_length() == 1
    live.purge()


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_the_command_replays_once_on_a_worker_and_a_forced_replay_reuses_the_idempotency_key(owner, request):
    key = unique_key(request.node.name)
    with running_worker() as worker:
        letter = dead_letter_for_real(owner.org, key, worker)
        with fixed(key):
            output = replay_jobs("--task", "tests.jobs.fail_until_fixed", "--org", "acme")
            assert f"replayed {letter.pk}" in output
            wait_for_outcomes(letter, ["succeeded"], worker)
            assert jobs.effects(key) == 1

            output = replay_jobs("--id", str(letter.pk))
            assert f"skipped {letter.pk}" in output
            # Forced, it runs again under the original idempotency key: the receipt makes it a no-op.
            replay_jobs("--id", str(letter.pk), "--force")
            letter = wait_for_outcomes(letter, ["succeeded", "succeeded"], worker)
    assert jobs.effects(key) == 1
    assert {r["by"] for r in letter.replays} == {"manage.py replay_jobs"}
