"""The monitoring API: dead letters scoped to the caller's org (staff see all), replay and
discard, bulk replay by filter, and queue statistics read from the real broker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.jobs.queues import Queue
from core.models import DeadLetter, DeadLetterStatus, Org
from sync.monitoring import queues as monitoring
from tests import brokers, jobs, live
from tests.sync.dead_letters import (
    dead_letter_for_real,
    fixed,
    make_letter,
    running_worker,
    staff_caller,
    succeeded_replay,
    unique_key,
    wait_for_outcomes,
)

LIST = "/monitoring/dead-letters/"


def detail(letter: DeadLetter, suffix: str = "") -> str:
    return f"{LIST}{letter.pk}/{suffix}"


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.data["results"]]


@pytest.fixture
def letters(owner, outsider) -> dict[str, DeadLetter]:
    """One dead letter in acme (the owner's org), one in globex (the outsider's), one org-less."""
    return {
        "acme": make_letter(owner.org, key="acme-1"),
        "globex": make_letter(outsider.org, key="globex-1"),
        "platform": make_letter(None, task="sync.release_scheduled_jobs", queue=Queue.SCHEDULE.value),
    }


# --- tenancy -------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestTenancy:
    def test_an_org_admin_sees_only_their_orgs_dead_letters(self, admin, letters):
        assert ids(admin.client.get(LIST)) == [str(letters["acme"].pk)]
        response = admin.client.get(detail(letters["acme"]))
        assert response.status_code == 200
        assert response.data["kwargs"]["key"] == "acme-1"
        assert "RuntimeError" in response.data["traceback"]
        assert [a["attempt"] for a in response.data["attempts"]] == [1, 2, 3]

    def test_a_member_reads_their_orgs_dead_letters_but_may_not_act(self, member, letters):
        letter = letters["acme"]
        assert ids(member.client.get(LIST)) == [str(letter.pk)]
        assert member.client.get(detail(letter)).status_code == 200
        for path, body in ((detail(letter, "replay/"), {}), (detail(letter, "discard/"), {}),
                           (f"{LIST}replay/", {"all": True})):  # fmt: skip
            response = member.client.post(path, body, format="json")
            assert response.status_code == 403, (path, response.content)
            assert "owners and admins" in response.data["detail"]
        letter.refresh_from_db()
        assert letter.status == DeadLetterStatus.DEAD and letter.replays == []

    def test_another_orgs_dead_letter_is_a_404_on_every_route(self, outsider, letters):
        letter = letters["acme"]
        assert str(letter.pk) not in ids(outsider.client.get(LIST))
        assert outsider.client.get(detail(letter)).status_code == 404
        assert outsider.client.post(detail(letter, "replay/"), {}, format="json").status_code == 404
        assert outsider.client.post(detail(letter, "discard/"), {}, format="json").status_code == 404
        response = outsider.client.post(f"{LIST}replay/", {"all": True}, format="json")
        assert response.status_code == 200
        assert response.data["replayed"] == 1  # their own letter only
        letter.refresh_from_db()
        assert letter.status == DeadLetterStatus.DEAD and letter.replays == []

    def test_naming_another_org_in_the_filter_is_refused_alike_for_existing_and_missing_orgs(
        self, owner, outsider, letters
    ):
        existing = owner.client.get(LIST, {"org": outsider.org.slug})
        missing = owner.client.get(LIST, {"org": "no-such-org"})
        assert existing.status_code == missing.status_code == 400
        assert existing.data["org"][0].replace("globex", "X") == missing.data["org"][0].replace(
            "no-such-org", "X"
        )
        assert ids(owner.client.get(LIST, {"org": owner.org.slug})) == [str(letters["acme"].pk)]

    def test_staff_without_a_membership_see_every_org_and_platform_jobs(self, letters):
        staff = staff_caller()
        assert set(ids(staff.client.get(LIST))) == {str(letter.pk) for letter in letters.values()}
        assert ids(staff.client.get(LIST, {"org": "globex"})) == [str(letters["globex"].pk)]
        globex = Org.objects.get(slug="globex")
        assert ids(staff.client.get(LIST, {"org": str(globex.pk)})) == [str(letters["globex"].pk)]
        assert staff.client.get(detail(letters["platform"])).data["org"] is None
        assert staff.client.get(LIST, {"org": "nope"}).status_code == 400

    def test_staff_act_on_any_orgs_dead_letter_and_are_recorded_as_the_actor(self, letters):
        staff = staff_caller("ops-act@example.com")
        response = staff.client.post(detail(letters["globex"], "replay/"), {}, format="json")
        assert response.status_code == 202, response.content
        letter = DeadLetter.objects.get(pk=letters["globex"].pk)
        assert letter.status == DeadLetterStatus.REPLAYED
        assert letter.replays[-1]["by"] == "ops-act@example.com"
        assert letter.replays[-1]["task_id"] == response.data["task_id"]

    def test_queue_statistics_are_for_staff_only(self, owner, member, outsider, client):
        for caller in (owner, member, outsider):
            response = caller.client.get("/monitoring/queues/")
            assert response.status_code == 403
            assert "only staff" in response.data["detail"]
        assert client.get("/monitoring/queues/").status_code == 401


# --- the list's filters and bad input ------------------------------------------------------------


@pytest.mark.django_db
class TestListFilters:
    def test_it_filters_by_queue_task_status_time_and_search_newest_first(self, owner):
        now = timezone.now()
        old = make_letter(owner.org, failed_at=now - timedelta(days=2))
        new = make_letter(owner.org, failed_at=now - timedelta(minutes=1))
        other_task = make_letter(owner.org, task="tests.jobs.fail_always", failed_at=now - timedelta(hours=1))
        social = make_letter(owner.org, queue=Queue.SOCIAL.value, failed_at=now - timedelta(hours=2))
        discarded = make_letter(
            owner.org, status=DeadLetterStatus.DISCARDED, failed_at=now - timedelta(hours=3)
        )
        get = owner.client.get

        assert ids(get(LIST)) == [str(x.pk) for x in (new, other_task, social, discarded, old)]
        assert ids(get(LIST, {"queue": "social"})) == [str(social.pk)]
        assert ids(get(LIST, {"task": "tests.jobs.fail_always"})) == [str(other_task.pk)]
        assert ids(get(LIST, {"status": "discarded"})) == [str(discarded.pk)]
        after = (now - timedelta(days=1)).isoformat()
        assert str(old.pk) not in ids(get(LIST, {"last_failed_after": after}))
        assert ids(get(LIST, {"last_failed_before": after})) == [str(old.pk)]
        assert ids(get(LIST, {"search": new.task_id})) == [str(new.pk)]
        assert ids(get(LIST, {"search": social.correlation_id})) == [str(social.pk)]
        row = get(LIST, {"search": new.task_id}).data["results"][0]
        assert row["attempts_count"] == 3 and row["org_slug"] == "acme" and row["last_replay"] is None

    @pytest.mark.parametrize(
        "params",
        [
            {"queue": "nope"},
            {"status": "gone"},
            {"last_failed_after": "yesterday"},
            {"last_failed_before": "2024-13-40T00:00:00"},
            {"page_size": "abc"},
            {"task": "x" * 300},
            {"task": "a\x00b"},
            {"search": "\x00"},
            {"org": "acme\x00"},
        ],
    )
    def test_bad_filters_are_a_400_that_says_what_is_wrong(self, owner, params):
        response = owner.client.get(LIST, params)
        assert response.status_code == 400, response.content
        assert next(iter(params)) in response.json()


# --- replay, discard, bulk replay ----------------------------------------------------------------


@pytest.mark.django_db
class TestActions:
    def test_replay_records_the_caller_and_a_succeeded_one_is_not_replayed_again(self, admin):
        letter = make_letter(admin.org)
        response = admin.client.post(detail(letter, "replay/"), format="json")
        assert response.status_code == 202, response.content
        letter.refresh_from_db()
        assert letter.status == DeadLetterStatus.REPLAYED
        assert letter.replays[-1] | {"at": None} == {
            "at": None, "by": admin.user.email, "task_id": response.data["task_id"], "outcome": "pending"
        }  # fmt: skip

        done = make_letter(admin.org, replays=succeeded_replay(), status=DeadLetterStatus.REPLAYED)
        response = admin.client.post(detail(done, "replay/"), {}, format="json")
        assert response.status_code == 200
        assert response.data == {"replayed": False, "detail": "already succeeded on replay"}
        assert len(DeadLetter.objects.get(pk=done.pk).replays) == 1
        forced = admin.client.post(detail(done, "replay/"), {"force": True}, format="json")
        assert forced.status_code == 202 and len(DeadLetter.objects.get(pk=done.pk).replays) == 2

    def test_a_letter_whose_task_is_gone_is_a_409_and_bad_bodies_are_400s(self, owner):
        gone = make_letter(owner.org, task="crm.no_such_task")
        response = owner.client.post(detail(gone, "replay/"), {}, format="json")
        assert response.status_code == 409
        assert "no task 'crm.no_such_task'" in response.data["detail"]
        letter = make_letter(owner.org)
        for body in ({"force": "maybe"}, ["force"], "true"):
            response = owner.client.post(detail(letter, "replay/"), body, format="json")
            assert response.status_code == 400, (body, response.content)
        response = owner.client.post(detail(letter, "replay/"), "{not json", content_type="application/json")
        assert response.status_code == 400

    def test_discard_marks_it_once(self, owner):
        letter = make_letter(owner.org)
        first = owner.client.post(detail(letter, "discard/"))
        second = owner.client.post(detail(letter, "discard/"))
        assert first.status_code == second.status_code == 200
        assert first.data == {"discarded": True, "status": "discarded"}
        assert second.data["discarded"] is False and second.data["detail"] == "already discarded"
        assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.DISCARDED

    def test_bulk_replay_needs_a_filter_or_all_and_counts_replayed_and_skipped(self, owner):
        response = owner.client.post(f"{LIST}replay/", {}, format="json")
        assert response.status_code == 400
        assert '{"all": true}' in response.data["all"][0]
        # Status alone does not narrow the selection enough.
        assert owner.client.post(f"{LIST}replay/", {"status": "dead"}, format="json").status_code == 400

        social = [make_letter(owner.org, queue=Queue.SOCIAL.value) for _ in range(3)]
        make_letter(owner.org, queue=Queue.SOCIAL.value, status=DeadLetterStatus.DISCARDED)
        done = make_letter(owner.org, queue=Queue.SOCIAL.value, replays=succeeded_replay())
        oneoff = make_letter(owner.org)

        response = owner.client.post(f"{LIST}replay/", {"queue": "social"}, format="json")
        assert response.status_code == 200, response.content
        assert response.data == {"replayed": 3, "skipped": 1, "refused": 0, "refusals": [], "more": False}
        assert all(DeadLetter.objects.get(pk=x.pk).status == DeadLetterStatus.REPLAYED for x in social)
        assert DeadLetter.objects.get(pk=oneoff.pk).status == DeadLetterStatus.DEAD
        assert len(DeadLetter.objects.get(pk=done.pk).replays) == 1

        # Left dead: `done` (skipped again) and `oneoff`; one at a time says there is more.
        first = owner.client.post(f"{LIST}replay/", {"all": True, "limit": 1}, format="json")
        assert (first.data["replayed"] + first.data["skipped"], first.data["more"]) == (1, True)
        rest = owner.client.post(f"{LIST}replay/", {"all": True}, format="json")
        assert first.data["replayed"] + rest.data["replayed"] == 1
        assert first.data["skipped"] + rest.data["skipped"] == 2  # `done`, once per call
        assert DeadLetter.objects.get(pk=oneoff.pk).status == DeadLetterStatus.REPLAYED

    @pytest.mark.parametrize(
        "body",
        [{"all": "yes please"}, {"queue": "nope"}, {"limit": 0}, {"limit": 10**6}, ["all"], {"force": []}],
    )
    def test_bulk_replay_rejects_bad_bodies(self, owner, body):
        make_letter(owner.org)
        response = owner.client.post(f"{LIST}replay/", body, format="json")
        assert response.status_code == 400, response.content
        assert DeadLetter.objects.filter(status=DeadLetterStatus.REPLAYED).count() == 0


# --- on a real worker ------------------------------------------------------------------------------


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_replay_through_the_api_runs_the_job_once_and_a_second_is_a_no_op(admin, request):
    key = unique_key(request.node.name)
    with running_worker() as worker:
        letter = dead_letter_for_real(admin.org, key, worker)
        assert admin.client.get(detail(letter)).data["status"] == "dead"
        with fixed(key):
            response = admin.client.post(detail(letter, "replay/"), {}, format="json")
            assert response.status_code == 202, response.content
            letter = wait_for_outcomes(letter, ["succeeded"], worker)
            assert jobs.effects(key) == 1
            assert letter.replays[0]["task_id"] == response.data["task_id"]

            again = admin.client.post(detail(letter, "replay/"), {}, format="json")
            assert again.status_code == 200 and again.data["replayed"] is False
            assert admin.client.get(detail(letter)).data["last_replay"]["outcome"] == "succeeded"
    assert jobs.effects(key) == 1
    assert len(DeadLetter.objects.get(pk=letter.pk).replays) == 1


def _queue(stats: dict, name: str) -> dict:
    return next(q for q in stats["queues"] if q["name"] == name)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_queue_statistics_show_depth_age_workers_and_recent_outcomes(owner, request):
    staff = staff_caller("ops-queues@example.com")
    live.purge()
    # Only this test's outcomes in the windows: earlier tests' counts would leave the 5-minute
    # window at the next minute, and could cancel this test's one success (seen on RabbitMQ in CI).
    counters = monitoring.broker()
    for counter in counters.scan_iter(match="monitoring:jobs:*"):
        counters.delete(counter)
    # Two jobs wait on a queue with no worker: depth 2, and the oldest has an age.
    for _ in range(2):
        jobs.noop.apply_async(kwargs={"org_id": None}, queue=Queue.SOCIAL.value)
    response = staff.client.get("/monitoring/queues/")
    assert response.status_code == 200, response.content
    before = response.data
    assert before["broker"] == {"reachable": True, "error": None}
    assert {q["name"] for q in before["queues"]} == {q.value for q in Queue}
    social = _queue(before, "social")
    assert social["depth"] == 2
    if brokers.is_rabbit():  # the oldest message's age needs RabbitMQ's management API
        assert social["oldest_age_seconds"] is None
    else:
        assert 0 <= social["oldest_age_seconds"] < 60
    assert social["workers"] == []
    assert social["succeeded_5m"] == social["succeeded_60m"] == 0

    key = unique_key(request.node.name)
    with running_worker() as worker:
        # running_worker purged the waiting jobs; this one runs, and one fails three times.
        jobs.noop.apply_async(kwargs={"org_id": None}, queue=Queue.SOCIAL.value)
        jobs.fail_always.apply_async(kwargs={"org_id": str(owner.org.pk), "key": key}, queue="billing")
        live.wait_for(
            lambda: DeadLetter.objects.filter(kwargs__key=key).exists(),
            timeout=30,
            what=f"the dead letter; log:\n{worker.output()}",
        )
        after = live.wait_for(
            lambda: (
                (data := staff.client.get("/monitoring/queues/").data)
                and _queue(data, "social")["succeeded_5m"] > social["succeeded_5m"]
                and data
            ),
            timeout=15,
            what=f"the success to be counted; log:\n{worker.output()}",
        )
    social_after, billing_before, billing = (
        _queue(after, "social"),
        _queue(before, "billing"),
        _queue(after, "billing"),
    )
    assert social_after["depth"] == 0
    assert social_after["succeeded_5m"] == social["succeeded_5m"] + 1
    assert social_after["succeeded_60m"] >= social_after["succeeded_5m"]
    assert billing["failed_5m"] == billing_before["failed_5m"] + 3  # two retried attempts and the last
    assert billing["dead_lettered_5m"] == billing_before["dead_lettered_5m"] + 1
    assert billing["dead_lettered_60m"] >= billing["dead_lettered_5m"]
    assert len(after["workers"]["replied"]) == 1
    assert all(q["workers"] == after["workers"]["replied"] for q in after["queues"])
