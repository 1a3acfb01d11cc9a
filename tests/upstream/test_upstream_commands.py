"""The Upstream/Connect management commands: add_connection, reprocess_webhooks and
rotate_connection_keys (a key rotation from start to finish, on the raw columns)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection as db
from django.utils import timezone

from core.jobs.queues import Queue
from sync.models import Connection, InboundStatus, InboundWebhook, Vendor
from tests import brokers, live
from tests.upstream.signing import new_whsec

pytestmark = pytest.mark.django_db

API_KEY = "sk_test_commandLineKey4242"
SECRET = "whsec_commandLineSigningSecret"


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- add_connection ------------------------------------------------------------------------------------


class TestAddConnection:
    def test_it_creates_the_connection_and_ends_with_its_id_and_inbound_path(self, owner):
        out, _ = run(
            "add_connection", "acme", "stripe", "main", "--credential", f"api_key={API_KEY}",
            "--webhook-secret", SECRET,
        )  # fmt: skip

        connection = Connection.objects.get(org=owner.org, vendor=Vendor.STRIPE, name="main")
        assert connection.credentials == {"api_key": API_KEY}
        assert connection.signing_secrets() == [SECRET]
        assert out.strip().splitlines()[-1] == f"{connection.pk} /storefront/stripe/{connection.pk}/webhook/"
        assert "credential keys: api_key" in out
        assert API_KEY not in out and SECRET not in out

    def test_a_value_may_contain_equals_signs_and_a_vendor_without_webhooks_says_so(self, owner, settings):
        settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        out, _ = run(
            "add_connection", "acme", "smtp", "relay", "--credential", "host=127.0.0.1",
            "--credential", "password=a=b==", "--base-url", "http://127.0.0.1:2525/", "--disabled",
        )  # fmt: skip
        connection = Connection.objects.get(name="relay")
        assert connection.credentials == {"host": "127.0.0.1", "password": "a=b=="}
        assert (connection.enabled, connection.base_url) == (False, "http://127.0.0.1:2525/")
        assert out.strip().splitlines()[-1] == f"{connection.pk} (this vendor sends no webhooks)"

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["nope", "stripe", "main", "--credential", f"api_key={API_KEY}"], "No org with slug 'nope'"),
            (["acme", "mailchimp", "main"], "Unknown vendor 'mailchimp'"),
            (["acme", "stripe", "main"], "credentials.api_key: Required for stripe"),
            (["acme", "stripe", "main", "--credential", API_KEY], "--credential #1 must be KEY=VALUE"),
            (["acme", "stripe", "main", "--credential", f"api_key={API_KEY}", "--credential", "api_key=x"],
             "given twice"),
            (["acme", "stripe", "main", "--credential", f"api_key={API_KEY}", "--credential", "pin=1234"],
             "credentials.pin: Unknown credential"),
            (["acme", "stripe", "main", "--credential", f"api_key={API_KEY}", "--webhook-secret", API_KEY],
             "webhook_secret: A Stripe signing secret starts with whsec_"),
            (["acme", "stripe", "main", "--credential", f"api_key={API_KEY}", "--base-url",
              "http://169.254.169.254/"], "base_url: host '169.254.169.254' resolves to 169.254.169.254"),
        ],
    )  # fmt: skip
    def test_bad_input_is_a_command_error_that_never_echoes_a_secret(self, owner, args, words):
        with pytest.raises(CommandError) as raised:
            run("add_connection", *args)
        assert words in str(raised.value)
        assert API_KEY not in str(raised.value)
        assert not Connection.objects.exists()

    def test_a_duplicate_name_is_refused(self, owner):
        run("add_connection", "acme", "sendgrid", "mail", "--credential", "api_key=SG.one")
        with pytest.raises(CommandError, match="already has a sendgrid connection named 'mail'"):
            run("add_connection", "acme", "sendgrid", "mail", "--credential", "api_key=SG.two")


# --- reprocess_webhooks --------------------------------------------------------------------------------


@pytest.fixture
def inbox_rows(owner, outsider) -> dict[str, InboundWebhook]:
    def row(
        org: Any, vendor: str, status: str, *, verified: bool = True, age_days: int = 0
    ) -> InboundWebhook:
        made = InboundWebhook.objects.create(
            vendor=vendor, org=org, body=b"{}", status=status, verified=verified,
            vendor_event_id="" if not verified else f"evt_{InboundWebhook.objects.count()}",
        )  # fmt: skip
        if age_days:
            InboundWebhook.objects.filter(pk=made.pk).update(
                received_at=timezone.now() - timedelta(days=age_days)
            )
        return made

    return {
        "failed": row(owner.org, Vendor.STRIPE, InboundStatus.FAILED),
        "old_failed": row(owner.org, Vendor.WEBHOOK, InboundStatus.FAILED, age_days=10),
        "ignored": row(outsider.org, Vendor.STRIPE, InboundStatus.IGNORED),
        "processed": row(owner.org, Vendor.STRIPE, InboundStatus.PROCESSED),
        "rejected": row(owner.org, Vendor.STRIPE, InboundStatus.REJECTED, verified=False),
    }


@pytest.fixture
def events_queue():
    live.purge()
    yield brokers.session()
    live.purge()


def queued(broker: brokers.Broker) -> list[tuple[str, bool]]:
    return sorted((body[1]["inbound_id"], body[1]["force"]) for _, body in broker.queued(Queue.EVENTS.value))


class TestReprocessWebhooks:
    def test_by_default_every_failed_row_is_queued(
        self, inbox_rows, events_queue, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            out, _ = run("reprocess_webhooks")
        assert (
            out.strip().splitlines()[-1] == "2 webhook(s) queued for reprocessing; 0 refused; of 2 selected."
        )
        assert queued(events_queue) == sorted(
            [(str(inbox_rows["failed"].pk), False), (str(inbox_rows["old_failed"].pk), False)]
        )

    def test_filters_narrow_the_selection(self, inbox_rows, events_queue, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            run("reprocess_webhooks", "--status", "failed", "--vendor", "webhook")
        assert queued(events_queue) == [(str(inbox_rows["old_failed"].pk), False)]
        live.purge()
        with django_capture_on_commit_callbacks(execute=True):
            run("reprocess_webhooks", "--since", "2d")
        assert queued(events_queue) == [(str(inbox_rows["failed"].pk), False)]
        live.purge()
        with django_capture_on_commit_callbacks(execute=True):
            run("reprocess_webhooks", "--status", "ignored", "--org", "globex")
        assert queued(events_queue) == [(str(inbox_rows["ignored"].pk), True)]

    def test_ids_select_any_verified_row_and_a_processed_one_is_forced(
        self, inbox_rows, events_queue, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            out, err = run(
                "reprocess_webhooks", str(inbox_rows["processed"].pk), "01900000-0000-7000-8000-000000000000"
            )
        assert queued(events_queue) == [(str(inbox_rows["processed"].pk), True)]
        assert "not found: 01900000-0000-7000-8000-000000000000" in err
        assert "1 webhook(s) queued" in out

    def test_a_rejected_row_is_refused_with_a_nonzero_exit(
        self, inbox_rows, events_queue, django_capture_on_commit_callbacks
    ):
        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(CommandError, match="failed verif"),
        ):
            run("reprocess_webhooks", str(inbox_rows["rejected"].pk), str(inbox_rows["failed"].pk))
        assert queued(events_queue) == [(str(inbox_rows["failed"].pk), False)]

    def test_a_dry_run_queues_nothing(self, inbox_rows, events_queue, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            out, _ = run("reprocess_webhooks", "--dry-run")
        assert f"would reprocess {inbox_rows['failed'].pk}" in out
        assert "2 webhook(s) would be queued (dry run: nothing was)" in out
        assert queued(events_queue) == []

    @pytest.mark.parametrize(
        ("args", "words"),
        [(["not-a-uuid"], "not an inbound webhook id"), (["--vendor", "acme"], "Unknown vendor"),
         (["--since", "last tuesday"], "Not an ISO 8601"), (["--org", "a\x00"], "NUL")],
    )  # fmt: skip
    def test_bad_input_is_a_command_error(self, inbox_rows, args, words):
        with pytest.raises(CommandError, match=words):
            run("reprocess_webhooks", *args)


# --- rotate_connection_keys ------------------------------------------------------------------------------


def raw_columns(pk: Any) -> tuple[str, str]:
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT credentials, webhook_secrets FROM {Connection._meta.db_table} WHERE id = %s",
            [Connection._meta.pk.get_db_prep_value(pk, db)],
        )
        return cursor.fetchone()


class TestRotateConnectionKeys:
    def test_a_rotation_from_the_old_key_to_the_new_one(self, owner, settings):
        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.FIELD_ENCRYPTION_KEYS = [old]
        secret = new_whsec()
        made = [
            Connection.objects.create(
                org=owner.org, vendor=Vendor.STRIPE, name=f"c{n}", credentials={"api_key": f"{API_KEY}{n}"},
                webhook_secrets=[{"secret": secret, "added_at": "2026-01-01T00:00:00+00:00"}],
            )
            for n in range(3)
        ]  # fmt: skip
        for connection in made:
            for token in raw_columns(connection.pk):
                Fernet(old).decrypt(token.encode())

        # The new key goes first; the old one stays until the rows are re-encrypted.
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        assert Connection.objects.get(pk=made[0].pk).credentials == {"api_key": f"{API_KEY}0"}
        out, _ = run("rotate_connection_keys")
        assert out.strip() == "3 connection(s) re-encrypted with the newest key; 0 already were."
        for connection in made:
            for token in raw_columns(connection.pk):
                Fernet(new).decrypt(token.encode())
        assert run("rotate_connection_keys")[0].strip() == (
            "0 connection(s) re-encrypted with the newest key; 3 already were."
        )

        settings.FIELD_ENCRYPTION_KEYS = [new]
        for n, connection in enumerate(made):
            stored = Connection.objects.get(pk=connection.pk)
            assert stored.credentials == {"api_key": f"{API_KEY}{n}"}
            assert stored.signing_secrets() == [secret]

    def test_a_dry_run_changes_nothing(self, owner, settings):
        old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.FIELD_ENCRYPTION_KEYS = [old]
        connection = Connection.objects.create(
            org=owner.org, vendor=Vendor.SENDGRID, name="m", credentials={"api_key": "SG.k"}
        )
        before = raw_columns(connection.pk)
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        out, _ = run("rotate_connection_keys", "--dry-run")
        assert out.strip() == "1 connection(s) would be re-encrypted (dry run); 0 already were."
        assert raw_columns(connection.pk) == before

    def test_a_row_no_configured_key_reads_is_reported(self, owner, settings):
        lost, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        settings.FIELD_ENCRYPTION_KEYS = [lost]
        connection = Connection.objects.create(
            org=owner.org, vendor=Vendor.SENDGRID, name="m", credentials={"api_key": "SG.k"}
        )
        settings.FIELD_ENCRYPTION_KEYS = [new]
        with pytest.raises(
            CommandError, match=f"cannot be decrypted with any configured key.*{connection.pk}"
        ):
            run("rotate_connection_keys")

    def test_without_configured_keys_there_is_nothing_to_rotate_to(self, settings):
        settings.FIELD_ENCRYPTION_KEYS = []
        with pytest.raises(CommandError, match="FIELD_ENCRYPTION_KEYS is empty"):
            run("rotate_connection_keys")
