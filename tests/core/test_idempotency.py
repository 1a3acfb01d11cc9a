"""Idempotency-Key on the API's writes: a retry answers the first response and writes nothing;
another request under the key is a 422; a failed write keeps no key; keys expire; every write
route takes one (the purge: tests/sync/test_purge.py; secrets: tests/automation/test_flows_api.py)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.views import APIView

from core import services
from core.api.idempotency import IdempotentWritesMixin
from core.models import EventRecord, IdempotencyKey, Record

pytestmark = pytest.mark.django_db


def post(caller, key, data=None, path="/collections/note/"):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return caller.client.post(path, {"data": data or {"title": "once"}}, format="json", **headers)


def events_for(record_id):
    return EventRecord.objects.filter(name="collection-create", record_pk=str(record_id)).count()


def test_a_retried_create_answers_the_first_response_and_writes_nothing(owner):
    key = str(uuid.uuid4())
    first = post(owner, key)
    retry = post(owner, key)

    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry["Content-Type"] == first["Content-Type"]
    assert retry["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Record.objects.filter(datatype="note").count() == 1
    assert events_for(first.json()["id"]) == 1


def test_without_a_key_a_retry_is_a_second_write(owner):
    post(owner, None)
    post(owner, None)
    assert Record.objects.filter(datatype="note").count() == 2


def test_the_same_key_on_another_request_is_a_422_and_writes_nothing(owner):
    key = str(uuid.uuid4())
    assert post(owner, key, {"title": "a"}).status_code == 201
    other_body = post(owner, key, {"title": "b"})
    other_path = post(owner, key, {"title": "a"}, path="/collections/task/")

    for response in (other_body, other_path):
        assert response.status_code == 422, response.content
        assert "Idempotency-Key" in response.json()["detail"]
    assert Record.objects.count() == 1


def test_keys_are_per_caller(owner, admin):
    key = str(uuid.uuid4())
    mine, theirs = post(owner, key), post(admin, key)
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert not theirs.has_header("Idempotent-Replayed")


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "two words", 'a"b', "tab\there"])
def test_a_malformed_key_is_a_400_naming_the_header(owner, key):
    response = owner.client.post(
        "/collections/note/", {"data": {}}, format="json", HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1")
    )
    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()
    assert not Record.objects.exists() and not IdempotencyKey.objects.exists()


def test_a_quoted_key_is_the_same_key(owner):
    key = str(uuid.uuid4())
    post(owner, key)
    assert post(owner, f'"{key}"')["Idempotent-Replayed"] == "true"


def test_a_refused_write_keeps_no_key_so_the_corrected_request_can_use_it(owner):
    key = str(uuid.uuid4())
    refused = owner.client.post("/collections/note/", {"data": [1]}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert refused.status_code == 400
    assert not IdempotencyKey.objects.exists()
    assert post(owner, key).status_code == 201


def test_a_server_error_keeps_no_key_and_writes_nothing(owner, monkeypatch):
    """A fault injected after the record is written: the request's transaction rolls back with
    its key, and the retry with the same key writes once."""
    key = str(uuid.uuid4())
    real_create = services.record_create

    def create_then_fail(**kwargs):
        real_create(**kwargs)
        raise RuntimeError("injected: the process fails after the write")

    monkeypatch.setattr(services, "record_create", create_then_fail)
    owner.client.raise_request_exception = False
    assert post(owner, key).status_code == 500
    assert not Record.objects.exists() and not IdempotencyKey.objects.exists()
    monkeypatch.setattr(services, "record_create", real_create)
    assert post(owner, key).status_code == 201
    assert Record.objects.count() == 1


def test_a_retried_delete_answers_204_again_instead_of_404(owner):
    record_id = post(owner, None).json()["id"]
    key = str(uuid.uuid4())
    path = f"/collections/note/{record_id}/"
    first = owner.client.delete(path, HTTP_IDEMPOTENCY_KEY=key)
    retry = owner.client.delete(path, HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == retry.status_code == 204
    assert retry["Idempotent-Replayed"] == "true"
    assert owner.client.delete(path).status_code == 404


def test_an_expired_key_runs_the_request_again(owner):
    key = str(uuid.uuid4())
    post(owner, key)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = post(owner, key)
    assert again.status_code == 201 and not again.has_header("Idempotent-Replayed")
    assert Record.objects.count() == 2
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_write_once(owner):
    """Sent together: one writes, the other waits on the key's unique index and then replays."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(("file:", ":memory:")):
        pytest.skip("an in-memory SQLite database is not shared between threads")
    key = str(uuid.uuid4())
    start = threading.Barrier(4)
    answers = []

    def send():
        start.wait()
        try:
            answers.append(post(owner, key))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answer.status_code for answer in answers) == [201] * 4, [a.content for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert Record.objects.filter(datatype="note").count() == 1


def _routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def test_every_write_route_of_the_api_takes_an_idempotency_key():
    """A new view that writes without the mixin fails here (vendor webhooks are plain Django
    views: their senders' own delivery ids dedupe them)."""
    missing = []
    for route, callback in _routes(get_resolver().url_patterns):
        view = getattr(callback, "cls", None)
        if view is None or not issubclass(view, APIView):
            continue
        actions = getattr(callback, "actions", None)
        methods = (
            set(actions) if actions else {name for name in view.http_method_names if hasattr(view, name)}
        )
        if getattr(view, "repeatable_writes", False):
            continue  # says why it needs no key (a public form: submitting twice changes nothing more)
        if methods & {"post", "put", "patch", "delete"} and not issubclass(view, IdempotentWritesMixin):
            missing.append(f"{route} ({view.__name__})")
    assert not missing
