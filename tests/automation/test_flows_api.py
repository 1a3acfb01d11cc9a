"""The flows API: the spec's example, versioning, validation as 400s by field path (SSRF at save
included: QUALITY.md row 11), secrets shown once and rotated, dry runs, roles and tenancy."""

from __future__ import annotations

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from automation.models import Flow, FlowVersion
from core import services as core_services
from core.models import EventRecord
from tests.upstream.signing import new_whsec

pytestmark = pytest.mark.django_db

HOOK = "https://example.com/hook"


def spec_example(secret: str | None = None) -> dict:
    config = {"url": HOOK, **({"secret": secret} if secret else {})}
    return {
        "name": "notify",
        "trigger": {"event": "collection-create", "datatype": "lead"},
        "steps": [{"type": "send-webhook", "config": config}],
    }


def create(caller, body, **extra):
    return caller.client.post("/automation/flows/", body, format="json", **extra)


def test_the_spec_example_answers_201_and_never_echoes_the_secret(owner, public_example):
    secret = new_whsec()
    response = create(owner, spec_example(secret))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "notify" and body["enabled"] is True and body["version"] == 1
    assert body["trigger"] == {"event": "collection-create", "datatype": "lead"}
    [step] = body["steps"]
    assert step["id"] == "step-1" and step["type"] == "send-webhook"
    assert step["config"]["url"] == HOOK
    assert "secret" not in step["config"]
    assert len(step["config"]["secret_fingerprints"]) == 1
    assert secret not in response.content.decode()
    flow = Flow.objects.get(pk=body["id"])
    assert flow.step_secrets("step-1") == [secret]  # stored, encrypted at rest
    assert FlowVersion.objects.filter(flow=flow).count() == 1


def test_a_generated_secret_is_shown_once(owner, public_example):
    response = create(owner, spec_example())
    assert response.status_code == 201, response.content
    generated = response.json()["steps"][0]["config"]["secret"]
    assert generated.startswith("whsec_")
    flow_id = response.json()["id"]
    again = owner.client.get(f"/automation/flows/{flow_id}/").json()
    assert "secret" not in again["steps"][0]["config"]
    assert generated not in str(owner.client.get("/automation/flows/").json())
    assert Flow.objects.get(pk=flow_id).step_secrets("step-1") == [generated]


def test_editing_steps_bumps_the_version_and_keeps_the_secret(owner, public_example):
    secret = new_whsec()
    flow_id = create(owner, spec_example(secret)).json()["id"]
    renamed = owner.client.patch(f"/automation/flows/{flow_id}/", {"name": "renamed"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["version"] == 1  # a rename is not a new definition
    changed = owner.client.patch(
        f"/automation/flows/{flow_id}/",
        {"steps": [{"type": "send-webhook", "config": {"url": HOOK + "/v2", "headers": {"X-Team": "ops"}}}]},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["version"] == 2
    assert "secret" not in changed.json()["steps"][0]["config"]  # same step id: the secret carries over
    flow = Flow.objects.get(pk=flow_id)
    assert flow.step_secrets("step-1") == [secret]
    assert list(FlowVersion.objects.filter(flow=flow).values_list("version", flat=True)) == [2, 1]
    assert FlowVersion.objects.get(flow=flow, version=1).steps[0]["config"]["url"] == HOOK
    same = owner.client.put(
        f"/automation/flows/{flow_id}/",
        {"name": "renamed", "trigger": changed.json()["trigger"],
         "steps": [{"type": "send-webhook", "config": {"url": HOOK + "/v2", "headers": {"X-Team": "ops"}}}]},
        format="json",
    )  # fmt: skip
    assert same.status_code == 200 and same.json()["version"] == 2  # nothing changed: no new version


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"trigger": {"event": "no-such-event"}},
            {
                "trigger": {
                    "event": ["'no-such-event' is not an event in the catalog (GET /events/catalog/)."]
                }
            },
        ),
        (
            {"trigger": {"event": "collection-create", "datatype": "Bad Type"}},
            {"trigger": {"datatype": ["A datatype: 1-64 lowercase letters, digits, _ and -."]}},
        ),
        (
            {"trigger": {"schedule": {"cron": "61 * * * *"}}},
            {"trigger": {"schedule": {"cron": ["cron spec '61 * * * *': Invalid end range: 61 > 59."]}}},
        ),
        (
            {"trigger": {"schedule": {"cron": "every day"}}},
            {
                "trigger": {
                    "schedule": {
                        "cron": [
                            "cron spec 'every day': five fields, minute hour day-of-month month day-of-week"
                        ]
                    }
                }
            },
        ),
        (
            {"trigger": {"schedule": {"cron": "0 9 * * *", "timezone": "Mars/Olympus"}}},
            {
                "trigger": {
                    "schedule": {
                        "timezone": [
                            "'Mars/Olympus' is not a known time zone (an IANA name such as Europe/Paris)."
                        ]
                    }
                }
            },
        ),
        (
            {"trigger": {"event": "collection-create", "schedule": {"cron": "* * * * *"}}},
            {"trigger": {"non_field_errors": ['Give exactly one of "event" and "schedule".']}},
        ),
        (
            {
                "trigger": {
                    "event": "collection-create",
                    "conditions": {"path": "data.x", "op": "like", "value": 1},
                }
            },
            {
                "trigger": {
                    "conditions": {
                        "op": [
                            "'like' is not an operator; use one of: equals, not-equals, "
                            "contains, in, greater-than, less-than, exists."
                        ]
                    }
                }
            },
        ),
        (
            {"trigger": {"event": "collection-create", "conditions": {"path": "da ta", "op": "exists"}}},
            {
                "trigger": {
                    "conditions": {
                        "path": [
                            "'da ta' is not a field path: parts are letters, digits, _ and -, joined by dots."
                        ]
                    }
                }
            },
        ),
        (
            {"steps": [{"type": "send-fax"}]},
            {
                "steps": {
                    "0": {
                        "type": [
                            "'send-fax' is not a step type; use one of: add-tag, condition, create-record, "
                            "send-email, send-push, send-sms, send-webhook, update-record, wait."
                        ]
                    }
                }
            },
        ),
        ({"steps": []}, {"steps": ["A non-empty list of steps."]}),
        (
            {"steps": [{"type": "send-webhook", "config": {}}]},
            {"steps": {"0": {"config": {"url": ["Required: the URL to POST to."]}}}},
        ),
        (
            {"steps": [{"type": "send-webhook", "config": {"url": "ftp://example.com/x"}}]},
            {
                "steps": {
                    "0": {
                        "config": {"url": ["This URL cannot be used: only http and https URLs are allowed."]}
                    }
                }
            },
        ),
        (
            {"steps": [{"type": "send-webhook", "config": {"url": HOOK, "secret": "hunter2"}}]},
            {
                "steps": {
                    "0": {
                        "config": {
                            "secret": [
                                "Not a signing secret: a signing secret is a string starting with 'whsec_' "
                                "(whsec_ and base64); omit it to get one generated."
                            ]
                        }
                    }
                }
            },
        ),
        (
            {"steps": [{"type": "send-webhook", "config": {"url": HOOK, "headers": {"webhook-id": "x"}}}]},
            {
                "steps": {
                    "0": {
                        "config": {
                            "headers": [
                                "Header 'webhook-id' is set by the platform and cannot be overridden."
                            ]
                        }
                    }
                }
            },
        ),
        (
            {"steps": [{"type": "wait", "config": {"duration": {"fortnights": 1}}}]},
            {"steps": {"0": {"config": {"duration": ["Unknown unit(s): fortnights."]}}}},
        ),
        (
            {"steps": [{"type": "wait", "config": {"until": "tomorrow"}}]},
            {"steps": {"0": {"config": {"until": ["Not an ISO 8601 date-time: 'tomorrow'."]}}}},
        ),
        (
            {
                "steps": [
                    {
                        "type": "condition",
                        "config": {"if": {"path": "event.data.x", "op": "equals", "value": 1}},
                        "then": [{"type": "create-record", "config": {"datatype": "x"}}],
                    }
                ]
            },
            {
                "steps": {
                    "0": {
                        "then": {
                            "0": {"config": {"data": ["Required: a template mapping of the record's data."]}}
                        }
                    }
                }
            },
        ),
        (
            {
                "steps": [
                    {"id": "a", "type": "wait", "config": {"duration": {"seconds": 1}}},
                    {"id": "a", "type": "wait", "config": {"duration": {"seconds": 1}}},
                ]
            },
            {"steps": {"1": {"id": ["Step id 'a' is used twice."]}}},
        ),
        (
            {"steps": [{"type": "update-record", "config": {"data": {"x": "{{ os.environ }}"}}}]},
            {
                "steps": {
                    "0": {
                        "config": {
                            "data": {
                                "x": ["'os.environ' must start with one of: event, run, schedule, steps."]
                            }
                        }
                    }
                }
            },
        ),
    ],
)
def test_what_is_wrong_in_a_definition_is_a_400_naming_the_field(owner, public_example, body, errors):
    response = create(owner, {**spec_example(new_whsec()), **body})
    assert response.status_code == 400, response.content
    assert response.json() == errors
    assert not Flow.objects.exists()


@pytest.mark.parametrize(
    ("url", "resolves_to"),
    [
        ("http://127.0.0.1/hook", None),
        ("http://169.254.169.254/latest/meta-data/", None),
        ("http://[::1]/hook", None),
        ("http://10.1.2.3/hook", None),
        ("http://[::ffff:10.0.0.1]/hook", None),
        ("https://internal.example.net/hook", "10.0.0.7"),  # a name that resolves there
    ],
)
def test_an_internal_url_is_refused_at_save(owner, settings, resolve_as, url, resolves_to):
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    if resolves_to:
        resolve_as({"internal.example.net": resolves_to})
    body = spec_example()
    body["steps"][0]["config"]["url"] = url
    response = create(owner, body)
    assert response.status_code == 400, response.content
    [message] = response.json()["steps"]["0"]["config"]["url"]
    assert message.startswith("This URL cannot be used:")
    assert not Flow.objects.exists()


def test_a_schedule_flow_is_kept_in_step_with_beat(owner):
    body = {"name": "daily", "trigger": {"schedule": {"cron": "0 9 * * mon-fri", "timezone": "Europe/Paris"}},
            "steps": [{"type": "create-record", "config": {"datatype": "digest", "data": {}}}]}  # fmt: skip
    with_commit = create(owner, body)
    assert with_commit.status_code == 201, with_commit.content
    flow_id = with_commit.json()["id"]
    task = PeriodicTask.objects.get(name=f"automation-flow:{flow_id}")
    assert task.task == "automation.tick" and task.enabled and task.queue == "schedule"
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "9", "mon-fri")
    assert str(task.crontab.timezone) == "Europe/Paris"

    owner.client.patch(f"/automation/flows/{flow_id}/", {"enabled": False}, format="json")
    assert not PeriodicTask.objects.get(name=f"automation-flow:{flow_id}").enabled
    owner.client.patch(
        f"/automation/flows/{flow_id}/",
        {"enabled": True, "trigger": {"schedule": "*/15 * * * *"}},
        format="json",
    )
    task = PeriodicTask.objects.get(name=f"automation-flow:{flow_id}")
    assert task.enabled and task.crontab.minute == "*/15" and str(task.crontab.timezone) == "UTC"
    owner.client.patch(
        f"/automation/flows/{flow_id}/", {"trigger": {"event": "contact.created"}}, format="json"
    )
    assert not PeriodicTask.objects.filter(name=f"automation-flow:{flow_id}").exists()
    owner.client.patch(f"/automation/flows/{flow_id}/", {"trigger": {"schedule": "0 * * * *"}}, format="json")
    assert owner.client.delete(f"/automation/flows/{flow_id}/").status_code == 204
    assert not PeriodicTask.objects.filter(name__startswith="automation-flow:").exists()


def test_secret_rotation_signs_with_both_until_the_old_one_is_dropped(owner, public_example):
    old = new_whsec()
    flow_id = create(owner, spec_example(old)).json()["id"]
    rotated = owner.client.post(
        f"/automation/flows/{flow_id}/rotate-secret/", {"step": "step-1"}, format="json"
    )
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and len(rotated.json()["fingerprints"]) == 2
    flow = Flow.objects.get(pk=flow_id)
    assert flow.step_secrets("step-1") == [new, old] and flow.version == 1
    assert "secret" not in owner.client.get(f"/automation/flows/{flow_id}/").json()["steps"][0]["config"]

    dropped = owner.client.post(f"/automation/flows/{flow_id}/drop-previous-secret/", {"step": "step-1"},
                                format="json")  # fmt: skip
    assert dropped.status_code == 200 and len(dropped.json()["fingerprints"]) == 1
    assert "secret" not in dropped.json()
    assert Flow.objects.get(pk=flow_id).step_secrets("step-1") == [new]

    mine = new_whsec()
    given = owner.client.post(
        f"/automation/flows/{flow_id}/rotate-secret/", {"step": "step-1", "secret": mine}, format="json"
    )
    assert (
        given.status_code == 200 and "secret" not in given.json()
    )  # a secret the caller chose is not echoed
    assert Flow.objects.get(pk=flow_id).step_secrets("step-1") == [mine, new]
    wrong = owner.client.post(f"/automation/flows/{flow_id}/rotate-secret/", {"step": "nope"}, format="json")
    assert wrong.status_code == 400
    assert wrong.json() == {"step": ["'nope' is not a signing step of this flow; its signing steps: step-1."]}


def test_a_dry_run_walks_the_steps_against_a_sample_and_sends_nothing(owner, public_example):
    body = {
        "name": "vip",
        "trigger": {"event": "collection-create", "datatype": "lead"},
        "steps": [
            {"id": "check", "type": "condition",
             "config": {"if": {"path": "event.data.plan", "op": "equals", "value": "vip"}},
             "then": [{"id": "hook", "type": "send-webhook",
                       "config": {"url": HOOK, "body": {"who": "{{ event.data.email }}"}}}],
             "else": [{"id": "note", "type": "create-record", "config": {"datatype": "note", "data": {}}}]},
            {"id": "pause", "type": "wait", "config": {"duration": {"minutes": 5}}},
        ],
    }  # fmt: skip
    flow_id = create(owner, body).json()["id"]
    response = owner.client.post(
        f"/automation/flows/{flow_id}/test/",
        {"event": {"data": {"plan": "vip", "email": "a@b.c"}}},
        format="json",
    )
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["matched"] is True and result["sent"] is False
    assert [(s["id"], s["outcome"]) for s in result["steps"]] == [("check", "done"), ("hook", "done"),
                                                                  ("pause", "done")]  # fmt: skip
    assert result["steps"][0]["branch"] == "then"
    assert result["steps"][1]["output"]["body"] == {"who": "a@b.c"}
    assert result["steps"][1]["output"]["sent"] is False
    assert "would_wait_until" in result["steps"][2]["output"]

    record = core_services.record_create(org=owner.org, actor=None, datatype="deal", data={"plan": "basic"})
    event = EventRecord.objects.get(record_pk=str(record.pk), name="collection-create")
    past = owner.client.post(f"/automation/flows/{flow_id}/test/", {"event_id": str(event.pk)}, format="json")
    assert past.status_code == 200
    assert past.json()["matched"] is False
    assert past.json()["reason"] == "the flow wants datatype 'lead', not 'deal'"
    assert [s["id"] for s in past.json()["steps"]] == ["check", "note", "pause"]
    assert not Flow.objects.get(pk=flow_id).runs.exists()

    missing = owner.client.post(
        f"/automation/flows/{flow_id}/test/",
        {"event_id": "00000000-0000-0000-0000-000000000000"},
        format="json",
    )
    assert missing.status_code == 400
    assert (
        owner.client.post(f"/automation/flows/{flow_id}/test/", {"event": [1]}, format="json").status_code
        == 400
    )


def test_members_read_and_only_admins_write(owner, member, admin, public_example):
    flow_id = create(owner, spec_example(new_whsec())).json()["id"]
    assert member.client.get("/automation/flows/").status_code == 200
    assert member.client.get(f"/automation/flows/{flow_id}/").status_code == 200
    assert member.client.get("/automation/runs/").status_code == 200
    assert create(member, spec_example(new_whsec())).status_code == 403
    assert (
        member.client.patch(f"/automation/flows/{flow_id}/", {"enabled": False}, format="json").status_code
        == 403
    )
    assert member.client.delete(f"/automation/flows/{flow_id}/").status_code == 403
    assert (
        admin.client.patch(f"/automation/flows/{flow_id}/", {"enabled": False}, format="json").status_code
        == 200
    )


def test_another_orgs_flows_and_runs_are_404_on_every_route(owner, outsider, public_example,
                                                           django_capture_on_commit_callbacks):  # fmt: skip
    from automation import engine
    from core.events import emit_envelope

    with django_capture_on_commit_callbacks(execute=True):
        flow_id = create(owner, spec_example(new_whsec())).json()["id"]
    envelope, _ = emit_envelope("collection-create", org=owner.org, datatype="lead", data={"id": "x"},
                                validate=False)  # fmt: skip
    [run] = engine.start_for_event(envelope)
    routes = [
        ("get", f"/automation/flows/{flow_id}/"),
        ("patch", f"/automation/flows/{flow_id}/"),
        ("put", f"/automation/flows/{flow_id}/"),
        ("delete", f"/automation/flows/{flow_id}/"),
        ("post", f"/automation/flows/{flow_id}/test/"),
        ("post", f"/automation/flows/{flow_id}/rotate-secret/"),
        ("post", f"/automation/flows/{flow_id}/drop-previous-secret/"),
        ("get", f"/automation/runs/{run.pk}/"),
        ("post", f"/automation/runs/{run.pk}/retry/"),
    ]
    for method, url in routes:
        response = getattr(outsider.client, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
    assert outsider.client.get("/automation/flows/").json()["results"] == []
    assert outsider.client.get("/automation/runs/").json()["results"] == []
    assert outsider.client.get(f"/automation/runs/?flow={flow_id}").json()["results"] == []


def test_run_filters_refuse_bad_values(owner):
    for query in ("status=lost", "flow=nope", "created_after=yesterday", "trigger=manual"):
        response = owner.client.get(f"/automation/runs/?{query}")
        assert response.status_code == 400, query
    assert owner.client.get("/automation/flows/?enabled=maybe").status_code == 400


def test_the_step_type_catalog_lists_every_registered_type(owner):
    response = owner.client.get("/automation/step-types/")
    assert response.status_code == 200
    by_name = {entry["name"]: entry for entry in response.json()}
    assert {"send-webhook", "create-record", "update-record", "wait", "condition"} <= set(by_name)
    assert by_name["send-webhook"]["signed"] is True
    assert by_name["condition"]["branches"] == ["then", "else"]


def test_a_stored_response_is_encrypted_and_a_generated_secret_replays(owner, public_example):
    key = "flow-create-1"
    first = owner.client.post("/automation/flows/", spec_example(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    secret = first.json()["steps"][0]["config"]["secret"]
    retry = owner.client.post("/automation/flows/", spec_example(), format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert retry.json()["steps"][0]["config"]["secret"] == secret
    with connection.cursor() as cursor:
        cursor.execute("SELECT response FROM core_idempotencykey")
        [(stored,)] = cursor.fetchall()
    assert secret not in stored and "steps" not in stored
