"""QUALITY.md row 20 on every writable JSON field: JSON we could not store or serve back (lone
surrogates, NUL, non-finite or unreadable numbers, deep nesting) is a 400 and nothing is stored;
and a lone surrogate stored before that rule is answered as U+FFFD, never a 500."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from automation.models import Flow
from core import services
from core.api.renderers import SafeJSONRenderer
from core.models import EventRecord, Record
from sync.models import Connection

HOSTILE: dict[str, str] = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate, nested": '{"list": ["fine", "a\\udc00b"]}',
    "lone surrogate in a key": '{"\\udbff": "x"}',
    "reversed surrogate pair": '"\\ude00\\ud83d"',
    "NUL": '"a\\u0000b"',
    "1e999999": "1e999999",
    "-1e400": "-1e400",
    "NaN": "NaN",
    "100k-digit integer": "9" * 100_000,
    "5,000 deep": "[" * 5000 + "]" * 5000,
}

STEP = '{"type": "create-record", "config": {"datatype": "task", "data": {"title": HOSTILE}}}'
FLOW = '{"name": "f", "trigger": {"event": "collection-create"}, "steps": [' + STEP + "]}"
CONDITION = (
    '{"event": "collection-create", "conditions": {"path": "data.s", "op": "equals", "value": HOSTILE}}'
)

CONNECTION = '{"vendor": "stripe", "name": "x", "credentials": CREDENTIALS}'

# Every writable JSON field: (method, path, body with HOSTILE where the value goes).
FIELDS: list[tuple[str, str, str]] = [
    ("post", "/collections/note/", '{"data": {"s": HOSTILE}}'),
    ("put", "/collections/note/{record}/", '{"data": {"s": HOSTILE}}'),
    ("patch", "/collections/note/{record}/", '{"data": {"s": HOSTILE}}'),
    ("post", "/automation/flows/", FLOW),
    ("post", "/automation/flows/", '{"name": "f", "trigger": ' + CONDITION + ', "steps": []}'),
    ("put", "/automation/flows/{flow}/", FLOW),
    ("patch", "/automation/flows/{flow}/", '{"steps": [' + STEP + "]}"),
    ("patch", "/automation/flows/{flow}/", '{"trigger": ' + CONDITION + "}"),
    ("post", "/automation/flows/{flow}/test/", '{"event": {"data": {"s": HOSTILE}}}'),
    ("post", "/upstream/connections/", CONNECTION.replace("CREDENTIALS", '{"api_key": HOSTILE}')),
    ("post", "/upstream/connections/", CONNECTION.replace("CREDENTIALS", "HOSTILE")),
    ("patch", "/upstream/connections/{connection}/", '{"credentials": {"api_key": HOSTILE}}'),
]
READS = ["/collections/note/", "/events/", "/automation/flows/", "/upstream/connections/"]


@pytest.fixture
def things(owner) -> dict[str, Any]:
    record = services.record_create(org=owner.org, actor=owner.user, datatype="note", data={"s": "ok"})
    flow_body = FLOW.replace("HOSTILE", '"ok"')
    flow = owner.client.post("/automation/flows/", flow_body, content_type="application/json")
    assert flow.status_code == 201, flow.content
    made = owner.client.post(
        "/upstream/connections/",
        {"vendor": "stripe", "name": "main", "credentials": {"api_key": "sk_test_jsonText"}},
        format="json",
    )
    assert made.status_code == 201, made.content
    return {"record": record.pk, "flow": flow.json()["id"], "connection": made.json()["id"]}


def _snapshot() -> tuple[Any, ...]:
    return (
        sorted((str(r.pk), repr(r.data)) for r in Record.objects.all()),
        sorted((str(f.pk), f.version, repr(f.trigger), repr(f.steps)) for f in Flow.objects.all()),
        sorted((str(c.pk), repr(c.credentials)) for c in Connection.objects.all()),
        EventRecord.objects.count(),
    )


@pytest.mark.parametrize("field", FIELDS, ids=lambda field: f"{field[0]} {field[1]} {field[2][:40]}")
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_json_we_could_not_keep_is_a_400_and_nothing_is_stored(owner, things, field, hostile):
    method, path, body = field
    before = _snapshot()

    path, body = path.format(**things), body.replace("HOSTILE", hostile)
    response = owner.client.generic(method.upper(), path, body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert json.loads(response.content.decode("utf-8"))  # the message itself is text
    assert _snapshot() == before
    for read in READS:
        assert owner.client.get(read).status_code == 200, read


def test_the_message_says_what_and_where(owner):
    response = owner.client.post(
        "/collections/note/", '{"data": {"a": [1, {"s": "\\ud800"}]}}', content_type="application/json"
    )

    assert response.status_code == 400
    assert "lone surrogate" in response.data["detail"]
    assert "data.a[1].s" in response.data["detail"]


@pytest.mark.parametrize("text", ['{"s": "\\ud800"}', '{"\\udc00": 1}', '{"n": 1e999}', '{"s": "\\u0000"}'])
def test_form_json_text_is_held_to_the_same_rule(owner, text):
    response = owner.client.post(
        "/collections/note/", "data=" + quote(text), content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 400, response.content
    assert not Record.objects.exists()


def test_a_paired_surrogate_escape_is_an_ordinary_character(owner):
    response = owner.client.post(
        "/collections/note/", '{"data": {"s": "\\ud83d\\ude00"}}', content_type="application/json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["data"] == {"s": "\U0001f600"}


def test_the_renderer_answers_a_lone_surrogate_as_the_replacement_character():
    body = SafeJSONRenderer().render({"s": "a\ud800b", "\udc00": ["\udfff"], "ok": "\U0001f600"})

    assert json.loads(body.decode("utf-8")) == {"s": "a\ufffdb", "\ufffd": ["\ufffd"], "ok": "\U0001f600"}


@pytest.mark.skipif(connection.vendor == "postgresql", reason="Postgres refuses to store a lone surrogate")
def test_rows_stored_with_a_lone_surrogate_still_read(owner):
    record = services.record_create(org=owner.org, actor=owner.user, datatype="note", data={"s": "\ud800"})

    for path in ("/collections/note/", f"/collections/note/{record.pk}/", "/events/"):
        response = owner.client.get(path)
        assert response.status_code == 200, path
        assert "\ufffd" in response.content.decode("utf-8")
