"""The admin of the queue machinery: dead letters listed, filtered, shown readably, replayed and
discarded (single and bulk); job logs, receipts and scheduled jobs read-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from core.jobs.queues import Queue
from core.models import (
    DeadLetter,
    DeadLetterStatus,
    JobLog,
    JobReceipt,
    ScheduledJob,
    ScheduledJobStatus,
    User,
)
from tests import jobs
from tests.sync.dead_letters import (
    dead_letter_for_real,
    fixed,
    make_letter,
    running_worker,
    succeeded_replay,
    unique_key,
    wait_for_outcomes,
)

CHANGELIST = "/admin/core/deadletter/"


def page(letter: DeadLetter, suffix: str = "change/") -> str:
    return f"{CHANGELIST}{letter.pk}/{suffix}"


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root@example.com", "not-a-real-password-1")


@pytest.fixture
def staff(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def flash(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.django_db
class TestDeadLetterPages:
    def test_the_list_shows_the_columns_and_filters_by_queue_task_org_status_and_date(
        self, staff, owner, outsider
    ):
        old = make_letter(owner.org, failed_at=timezone.now() - timedelta(days=10))
        social = make_letter(outsider.org, queue=Queue.SOCIAL.value, task="tests.jobs.fail_always")
        discarded = make_letter(None, status=DeadLetterStatus.DISCARDED)

        response = staff.get(CHANGELIST)
        assert response.status_code == 200
        content = response.content.decode()
        for column in ("Last failed at", "Task", "Queue", "Org", "Status", "Attempts", "Exception"):
            assert f">{column}<" in content or column in content
        assert "RuntimeError" in content
        shown = lambda r: {x.pk for x in r.context["cl"].result_list}  # noqa: E731
        assert shown(response) == {old.pk, social.pk, discarded.pk}
        assert shown(staff.get(CHANGELIST, {"queue": "social"})) == {social.pk}
        assert shown(staff.get(CHANGELIST, {"task": "tests.jobs.fail_always"})) == {social.pk}
        assert shown(staff.get(CHANGELIST, {"org__id__exact": str(owner.org.pk)})) == {old.pk}
        assert shown(staff.get(CHANGELIST, {"status__exact": "discarded"})) == {discarded.pk}
        # As the filter's "Past 7 days" link spells it.
        since = str(timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7))
        assert old.pk not in shown(staff.get(CHANGELIST, {"last_failed_at__gte": since}))

    @pytest.mark.parametrize("params", [{"queue": "\x00"}, {"task": "a\x00"}, {"q": "\x00"}])
    @pytest.mark.parametrize("model", ["deadletter", "joblog", "jobreceipt", "scheduledjob"])
    def test_a_nul_character_in_a_filter_is_a_400_not_a_500(self, staff, model, params):
        response = staff.get(f"/admin/core/{model}/", params)
        assert response.status_code == 400
        assert b"NUL" in response.content

    def test_it_searches_by_task_id_and_correlation_id(self, staff, owner):
        one, two = make_letter(owner.org), make_letter(owner.org)
        results = lambda q: {x.pk for x in staff.get(CHANGELIST, {"q": q}).context["cl"].result_list}  # noqa: E731
        assert results(one.task_id) == {one.pk}
        assert results(two.correlation_id) == {two.pk}
        assert results("nothing-like-it") == set()

    def test_the_detail_page_is_readable_and_read_only(self, staff, owner):
        letter = make_letter(owner.org, key="readable", replays=succeeded_replay())
        response = staff.get(page(letter))
        assert response.status_code == 200
        content = response.content.decode()
        assert "&quot;key&quot;: &quot;readable&quot;" in content  # kwargs, pretty-printed JSON
        assert "<pre" in content and "RuntimeError: not fixed yet (readable)" in content
        assert content.count("<tr><td>") >= 4  # three attempts and one replay
        assert "succeeded" in content and "someone" in content
        assert 'id="replay-button"' in content and 'id="force-replay-button"' in content
        assert 'id="discard-button"' in content
        assert 'name="_save"' not in content  # nothing to edit
        assert staff.get(f"{CHANGELIST}add/").status_code == 403
        assert staff.post(page(letter, "replay/")).status_code == 302
        assert staff.get(page(letter, "replay/")).status_code == 405

    def test_the_buttons_replay_and_discard_one_letter_with_a_message(self, staff, owner, superuser):
        letter = make_letter(owner.org)
        response = staff.post(page(letter, "replay/"), follow=True)
        assert any(m.startswith("Replayed as task") for m in flash(response))
        letter.refresh_from_db()
        assert letter.status == DeadLetterStatus.REPLAYED
        assert letter.replays[-1]["by"] == superuser.email and letter.replays[-1]["outcome"] == "pending"

        response = staff.post(page(letter, "discard/"), follow=True)
        assert flash(response) == ["Discarded."]
        response = staff.post(page(letter, "discard/"), follow=True)
        assert flash(response) == ["Already discarded."]
        assert 'id="discard-button"' not in response.content.decode()

        gone = make_letter(owner.org, task="crm.no_such_task")
        response = staff.post(page(gone, "replay/"), follow=True)
        assert flash(response) == ["Refused: no task 'crm.no_such_task' is registered any more."]

    def test_bulk_actions_say_how_many_were_replayed_skipped_and_refused(self, staff, owner):
        fresh = [make_letter(owner.org) for _ in range(2)]
        done = make_letter(owner.org, replays=succeeded_replay())
        gone = make_letter(owner.org, task="crm.no_such_task")
        selected = [str(x.pk) for x in (*fresh, done, gone)]
        response = staff.post(
            CHANGELIST, {"action": "replay_selected", "_selected_action": selected}, follow=True
        )
        (message,) = flash(response)
        assert message.startswith(
            "Replayed 2 dead letter(s); skipped 1 (already succeeded on replay); refused 1."
        )
        assert "crm.no_such_task" in message
        assert {DeadLetter.objects.get(pk=x.pk).status for x in fresh} == {DeadLetterStatus.REPLAYED}
        assert len(DeadLetter.objects.get(pk=done.pk).replays) == 1

        response = staff.post(
            CHANGELIST, {"action": "discard_selected", "_selected_action": selected[:2]}, follow=True
        )
        assert flash(response) == ["Discarded 2 dead letter(s); 0 already were."]

    def test_staff_who_may_only_view_get_no_buttons_and_no_actions(self, owner):
        viewer = User.objects.create_user("viewer@example.com", "pw-viewer-123", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
        client = Client()
        client.force_login(viewer)
        letter = make_letter(owner.org)
        content = client.get(page(letter)).content.decode()
        assert "RuntimeError" in content and 'id="replay-button"' not in content
        assert client.post(page(letter, "replay/")).status_code == 403
        assert "replay_selected" not in client.get(CHANGELIST).content.decode()
        assert DeadLetter.objects.get(pk=letter.pk).replays == []


@pytest.mark.django_db
class TestJobRowPages:
    def test_job_logs_receipts_and_scheduled_jobs_are_listed_read_only(self, staff, owner):
        JobLog.objects.create(task_id="t-1", task="tests.jobs.fail_always", attempts=[{"attempt": 1}])
        JobReceipt.objects.create(key="k-1", task="tests.jobs.record_effect")
        job = ScheduledJob.objects.create(
            run_at=timezone.now(), task="tests.jobs.noop", queue="oneoff", org=owner.org
        )
        for model in ("joblog", "jobreceipt", "scheduledjob"):
            assert staff.get(f"/admin/core/{model}/").status_code == 200
            assert staff.get(f"/admin/core/{model}/add/").status_code == 403
        assert staff.get("/admin/core/joblog/t-1/change/").status_code == 200
        assert staff.get(f"/admin/core/scheduledjob/{job.pk}/change/").status_code == 200
        filtered = staff.get("/admin/core/scheduledjob/", {"status": "pending", "queue": "oneoff"})
        assert [x.pk for x in filtered.context["cl"].result_list] == [job.pk]

    def test_cancel_cancels_only_pending_scheduled_jobs(self, staff):
        pending = ScheduledJob.objects.create(run_at=timezone.now(), task="tests.jobs.noop", queue="oneoff")
        released = ScheduledJob.objects.create(
            run_at=timezone.now(), task="tests.jobs.noop", queue="oneoff", status=ScheduledJobStatus.RELEASED
        )
        response = staff.post(
            "/admin/core/scheduledjob/",
            {"action": "cancel_selected", "_selected_action": [str(pending.pk), str(released.pk)]},
            follow=True,
        )
        assert flash(response) == ["Cancelled 1 scheduled job(s); 1 were not pending."]
        assert ScheduledJob.objects.get(pk=pending.pk).status == ScheduledJobStatus.CANCELLED
        assert ScheduledJob.objects.get(pk=released.pk).status == ScheduledJobStatus.RELEASED


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_replay_from_the_admin_runs_the_job_once_and_a_second_is_skipped(owner, superuser, request):
    client = Client()
    client.force_login(superuser)
    key = unique_key(request.node.name)
    with running_worker() as worker:
        letter = dead_letter_for_real(owner.org, key, worker)
        with fixed(key):
            response = client.post(page(letter, "replay/"), follow=True)
            assert any(m.startswith("Replayed as task") for m in flash(response))
            letter = wait_for_outcomes(letter, ["succeeded"], worker)
            assert jobs.effects(key) == 1
            assert letter.replays[0]["by"] == superuser.email

            response = client.post(page(letter, "replay/"), follow=True)
            assert flash(response) == ["Skipped: this dead letter already succeeded on replay."]
            response = client.post(
                CHANGELIST, {"action": "replay_selected", "_selected_action": [str(letter.pk)]}, follow=True
            )
            assert flash(response)[0].startswith("Replayed 0 dead letter(s); skipped 1")
    assert jobs.effects(key) == 1
    assert len(DeadLetter.objects.get(pk=letter.pk).replays) == 1
