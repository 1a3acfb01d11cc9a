"""Secrets at rest: a connection's credentials and webhook secrets are Fernet tokens in the
database (and in dumpdata), readable with any configured key, written with the newest."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection as db

from sync import crypto
from sync.models import Connection, Vendor

pytestmark = pytest.mark.django_db

API_KEY = "sk_live_atRestCredential31337"
SECRET = "whsec_atRestSigningSecret271828"


def raw_columns(pk: Any) -> tuple[str, str]:
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT credentials, webhook_secrets FROM {Connection._meta.db_table} WHERE id = %s",
            [Connection._meta.pk.get_db_prep_value(pk, db)],
        )
        return cursor.fetchone()


@pytest.fixture
def stored(owner) -> Connection:
    return Connection.objects.create(
        org=owner.org, vendor=Vendor.STRIPE, name="main", credentials={"api_key": API_KEY},
        webhook_secrets=[{"secret": SECRET, "added_at": "2026-11-27T10:00:00+00:00"}],
    )  # fmt: skip


def test_the_raw_columns_hold_fernet_tokens_not_the_plaintext(stored):
    credentials, secrets = raw_columns(stored.pk)

    for token in (credentials, secrets):
        assert API_KEY not in token and SECRET not in token
        assert "api_key" not in token and "secret" not in token  # not even the key names
        assert token.startswith("gAAAAA")  # a Fernet token's version byte, base64
    assert json.loads(crypto.fernet().decrypt(credentials.encode())) == {"api_key": API_KEY}
    assert Connection.objects.get(pk=stored.pk).signing_secrets() == [SECRET]


def test_the_same_value_encrypts_differently_each_time(owner):
    first = Connection.objects.create(
        org=owner.org, vendor=Vendor.SENDGRID, name="a", credentials={"api_key": API_KEY}
    )
    second = Connection.objects.create(
        org=owner.org, vendor=Vendor.SENDGRID, name="b", credentials={"api_key": API_KEY}
    )
    assert raw_columns(first.pk)[0] != raw_columns(second.pk)[0]


def test_dumpdata_writes_the_tokens_not_the_plaintext(stored):
    out = StringIO()
    call_command("dumpdata", "sync.connection", stdout=out)

    dumped = out.getvalue()
    assert API_KEY not in dumped and SECRET not in dumped
    fields = json.loads(dumped)[0]["fields"]
    assert crypto.decrypt(fields["credentials"]) == {"api_key": API_KEY}


def test_any_configured_key_reads_and_the_first_one_writes(owner, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    connection = Connection.objects.create(
        org=owner.org, vendor=Vendor.SENDGRID, name="k", credentials={"api_key": API_KEY}
    )
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert Connection.objects.get(pk=connection.pk).credentials == {"api_key": API_KEY}

    token = crypto.rotate(raw_columns(connection.pk)[0])
    assert json.loads(Fernet(new).decrypt(token.encode())) == {"api_key": API_KEY}
    assert crypto.encrypt({"x": 1}) and Fernet(new).decrypt(crypto.encrypt({"x": 1}).encode()) == b'{"x":1}'


def test_a_row_no_configured_key_reads_fails_loudly_not_silently(owner, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    connection = Connection.objects.create(
        org=owner.org, vendor=Vendor.SENDGRID, name="lost", credentials={"api_key": API_KEY}
    )
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="was a key removed"):
        Connection.objects.get(pk=connection.pk)


def test_a_key_that_is_not_a_fernet_key_is_a_configuration_error(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="must be Fernet keys"):
        crypto.encrypt({"api_key": API_KEY})
