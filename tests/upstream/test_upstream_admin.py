"""The Upstream/Connect admin: connections (secrets never displayed, entered write-only, base
URL guarded), the inbox (read-only, filtered, reprocessed) and outbound attempts (read-only)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.models import User
from sync.crypto import fingerprint
from sync.models import Connection, HttpAttempt, InboundStatus, InboundWebhook, Vendor
from tests import brokers, live
from tests.upstream.signing import new_whsec

pytestmark = pytest.mark.django_db

API_KEY = "sk_test_adminPagesKey7777"
SECRET = "whsec_adminPagesSigningSecret"
CHANGELIST = "/admin/sync/connection/"


def fp(secret: str) -> str:
    return fingerprint(secret)


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.com", "not-a-real-password-1"))
    return client


@pytest.fixture
def stripe(owner) -> Connection:
    return Connection.objects.create(
        org=owner.org, vendor=Vendor.STRIPE, name="main", credentials={"api_key": API_KEY},
        webhook_secrets=[{"secret": SECRET, "added_at": "2026-11-01T00:00:00+00:00"}],
    )  # fmt: skip


def change_page(connection: Connection) -> str:
    return f"{CHANGELIST}{connection.pk}/change/"


def form_data(connection: Connection, **changes: Any) -> dict[str, Any]:
    return {"name": connection.name, "base_url": connection.base_url, "enabled": "on", **changes}


def errors(response) -> dict[str, list[str]]:
    return {name: list(messages) for name, messages in response.context["adminform"].form.errors.items()}


class TestConnectionPages:
    def test_the_list_and_the_page_show_key_names_and_fingerprints_never_values(self, staff, stripe):
        listed = staff.get(CHANGELIST)
        page = staff.get(change_page(stripe))

        assert listed.status_code == page.status_code == 200
        assert "main" in listed.content.decode() and "unknown" in listed.content.decode()
        content = page.content.decode()
        assert "api_key" in content and fp(SECRET) in content
        assert f"/storefront/stripe/{stripe.pk}/webhook/" in content
        for response in (listed, page):
            assert API_KEY not in response.content.decode()
            assert SECRET not in response.content.decode()

    def test_adding_a_connection_encrypts_what_was_typed(self, staff, owner):
        secret = new_whsec()
        response = staff.post(
            f"{CHANGELIST}add/",
            {"org": owner.org.pk, "vendor": "webhook", "name": "partner", "base_url": "", "enabled": "on",
             "new_credentials": '{"api_key": "partner-outbound-key"}', "new_webhook_secret": secret},
        )  # fmt: skip

        assert response.status_code == 302, errors(response) if response.status_code == 200 else response
        connection = Connection.objects.get(name="partner")
        assert connection.credentials == {"api_key": "partner-outbound-key"}
        assert connection.signing_secrets() == [secret]
        assert response["Location"].endswith(CHANGELIST)

    @pytest.mark.parametrize(
        ("changes", "field", "words"),
        [
            ({"new_credentials": "{api_key: oops-" + API_KEY}, "new_credentials", "Not valid JSON"),
            ({"new_credentials": '{"token": "x"}'}, "new_credentials", "api_key: Required for stripe"),
            ({"new_credentials": ""}, "new_credentials", "Required"),
            ({"new_webhook_secret": "plain"}, "new_webhook_secret", "whsec_"),
            ({"base_url": "http://169.254.169.254/"}, "base_url", "link-local"),
        ],
    )
    def test_bad_input_on_add_is_shown_on_the_form_and_never_echoed(
        self, staff, owner, changes, field, words
    ):
        data = {"org": owner.org.pk, "vendor": "stripe", "name": "n", "base_url": "", "enabled": "on",
                "new_credentials": f'{{"api_key": "{API_KEY}"}}', **changes}  # fmt: skip
        response = staff.post(f"{CHANGELIST}add/", data)

        assert response.status_code == 200
        assert any(words in message for message in errors(response)[field]), errors(response)
        assert API_KEY not in response.content.decode()
        assert not Connection.objects.exists()

    def test_changing_replaces_credentials_adds_and_removes_secrets(self, staff, stripe):
        newer = "whsec_adminPagesRotatedSecret"
        response = staff.post(
            change_page(stripe),
            form_data(stripe, name="primary", new_credentials='{"api_key": "sk_test_new"}',
                      new_webhook_secret=newer, remove_secrets=[fp(SECRET)]),
        )  # fmt: skip

        assert response.status_code == 302, errors(response) if response.status_code == 200 else response
        stripe.refresh_from_db()
        assert (stripe.name, stripe.credentials, stripe.signing_secrets()) == (
            "primary", {"api_key": "sk_test_new"}, [newer],
        )  # fmt: skip

    def test_blank_write_only_fields_keep_what_is_stored(self, staff, stripe):
        response = staff.post(change_page(stripe), form_data(stripe, enabled=""))
        assert response.status_code == 302
        stripe.refresh_from_db()
        assert not stripe.enabled
        assert (stripe.credentials, stripe.signing_secrets()) == ({"api_key": API_KEY}, [SECRET])

    def test_the_last_secret_cannot_be_removed(self, staff, stripe):
        response = staff.post(change_page(stripe), form_data(stripe, remove_secrets=[fp(SECRET)]))
        assert response.status_code == 200
        assert "Keep at least one" in errors(response)["remove_secrets"][0]
        stripe.refresh_from_db()
        assert stripe.signing_secrets() == [SECRET]

    def test_a_duplicate_name_is_a_form_error(self, staff, owner, stripe):
        other = Connection.objects.create(org=owner.org, vendor=Vendor.STRIPE, name="other")
        response = staff.post(change_page(other), form_data(other, name="main"))
        assert response.status_code == 200
        assert "already has a stripe connection" in errors(response)["name"][0]

    def test_deleting_goes_through_the_service(self, staff, stripe):
        response = staff.post(f"{CHANGELIST}{stripe.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
        assert not Connection.objects.exists()


@pytest.fixture
def inbound(owner, stripe) -> dict[str, InboundWebhook]:
    def row(status: str, *, verified: bool = True, vendor: str = Vendor.STRIPE, n: int = 0) -> InboundWebhook:
        return InboundWebhook.objects.create(
            vendor=vendor, connection=stripe if vendor == Vendor.STRIPE else None, org=owner.org,
            body=b'{"id": "evt_%d", "type": "charge.succeeded"}' % n,
            headers={"Stripe-Signature": "t=1,v1=ab"},
            status=status, verified=verified, vendor_event_id=f"evt_{n}" if verified else "",
            vendor_event_type="charge.succeeded",
        )  # fmt: skip

    return {
        "failed": row(InboundStatus.FAILED, n=1),
        "rejected": row(InboundStatus.REJECTED, verified=False, n=2),
        "twilio": row(InboundStatus.PROCESSED, vendor=Vendor.TWILIO, n=3),
    }


class TestInboxPages:
    def test_the_list_filters_by_vendor_status_and_verified(self, staff, inbound):
        def shown(params: dict[str, str]) -> set[Any]:
            changelist = staff.get("/admin/sync/inboundwebhook/", params).context["cl"]
            return {row.pk for row in changelist.result_list}

        assert shown({}) == {row.pk for row in inbound.values()}
        assert shown({"vendor__exact": "twilio"}) == {inbound["twilio"].pk}
        assert shown({"status__exact": "failed"}) == {inbound["failed"].pk}
        assert shown({"verified__exact": "0"}) == {inbound["rejected"].pk}

    def test_a_row_is_read_only_and_shows_its_body(self, staff, inbound):
        page = staff.get(f"/admin/sync/inboundwebhook/{inbound['failed'].pk}/change/")
        assert page.status_code == 200
        assert "evt_1" in page.content.decode() and "charge.succeeded" in page.content.decode()
        assert 'name="_save"' not in page.content.decode()
        assert staff.get("/admin/sync/inboundwebhook/add/").status_code == 403

    def test_reprocess_queues_the_verified_rows_and_refuses_the_rejected(
        self, staff, inbound, django_capture_on_commit_callbacks
    ):
        live.purge()
        with django_capture_on_commit_callbacks(execute=True):
            response = staff.post(
                "/admin/sync/inboundwebhook/",
                {"action": "reprocess_selected", "_selected_action": [str(r.pk) for r in inbound.values()]},
                follow=True,
            )
        messages = [str(m) for m in response.context["messages"]]
        assert messages == [
            "Queued 2 webhook(s) for reprocessing. "
            "Refused 1 that failed verification (they are never processed)."
        ]
        queued = [body[1] for _, body in brokers.session().queued("events")]
        live.purge()
        assert sorted((job["inbound_id"], job["force"]) for job in queued) == sorted(
            [(str(inbound["failed"].pk), False), (str(inbound["twilio"].pk), True)]
        )

    @pytest.mark.parametrize("model", ["connection", "inboundwebhook", "httpattempt"])
    def test_searching_for_something_that_is_not_an_id_is_fine(self, staff, inbound, model):
        assert staff.get(f"/admin/sync/{model}/", {"q": "not-a-uuid"}).status_code == 200

    @pytest.mark.parametrize("params", [{"vendor": "\x00"}, {"q": "\x00"}])
    @pytest.mark.parametrize("model", ["connection", "inboundwebhook", "httpattempt"])
    def test_a_nul_character_in_a_filter_is_a_400(self, staff, model, params):
        response = staff.get(f"/admin/sync/{model}/", params)
        assert response.status_code == 400


class TestAttemptPages:
    def test_attempts_are_listed_read_only(self, staff, owner, stripe):
        attempt = HttpAttempt.objects.create(
            org=owner.org, connection=stripe, purpose="health-check", method="GET",
            url="https://api.stripe.com/v1/balance", status=200, latency_ms=12.5, correlation_id="corr-1",
        )  # fmt: skip
        listed = staff.get("/admin/sync/httpattempt/", {"q": "corr-1"})
        assert [a.pk for a in listed.context["cl"].result_list] == [attempt.pk]
        page = staff.get(f"/admin/sync/httpattempt/{attempt.pk}/change/")
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert staff.post(f"/admin/sync/httpattempt/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
        assert HttpAttempt.objects.filter(created_at__lte=timezone.now()).count() == 1
