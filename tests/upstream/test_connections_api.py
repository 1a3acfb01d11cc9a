"""/upstream/connections/: CRUD for the org's owners and admins, write-only secrets, input
checks (400s that say which field), secret rotation, the vendor check, and tenancy."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from sync.crypto import fingerprint
from sync.models import CircuitState, Connection, HttpAttempt, InboundWebhook, Vendor
from tests.sync.dead_letters import staff_caller
from tests.upstream.signing import as_body, new_whsec, standard_headers

pytestmark = pytest.mark.django_db

LIST = "/upstream/connections/"
STRIPE_KEY = "sk_test_51HzConnectionsApiKey0000"
STRIPE_SECRET = "whsec_connectionsApiStripeSigningSecret"


def detail(connection: Any, suffix: str = "") -> str:
    pk = connection["id"] if isinstance(connection, dict) else connection.pk
    return f"{LIST}{pk}/{suffix}"


def fp(secret: str) -> str:
    return fingerprint(secret)


def create(caller, **body: Any):
    payload = {"vendor": "stripe", "name": "main", "credentials": {"api_key": STRIPE_KEY}, **body}
    return caller.client.post(LIST, payload, format="json")


@pytest.fixture
def stripe(owner) -> dict[str, Any]:
    response = create(owner, webhook_secret=STRIPE_SECRET)
    assert response.status_code == 201, response.content
    return response.json()


# --- create and read -------------------------------------------------------------------------------


class TestCreateAndRead:
    def test_an_owner_creates_a_connection_and_sees_no_secret_in_the_answer(self, owner):
        response = create(owner, webhook_secret=STRIPE_SECRET)

        assert response.status_code == 201, response.content
        body = response.json()
        connection = Connection.objects.get(pk=body["id"])
        assert connection.org == owner.org and connection.created_by == owner.user
        assert connection.credentials == {"api_key": STRIPE_KEY}
        assert connection.signing_secrets() == [STRIPE_SECRET]
        assert body["credential_keys"] == ["api_key"]
        assert [s["id"] for s in body["webhook_secrets"]] == [fp(STRIPE_SECRET)]
        assert body["inbound_url"] == f"http://testserver/storefront/stripe/{connection.pk}/webhook/"
        assert (body["health"], body["circuit_state"], body["consecutive_failures"]) == (
            "unknown",
            "closed",
            0,
        )
        assert "credentials" not in body and "webhook_secret" not in body
        assert STRIPE_KEY not in response.content.decode()
        assert STRIPE_SECRET not in response.content.decode()

    def test_an_admin_lists_and_reads_the_orgs_connections_without_secrets(self, admin, stripe):
        listed = admin.client.get(LIST)
        assert listed.status_code == 200
        assert [row["id"] for row in listed.json()["results"]] == [stripe["id"]]
        shown = admin.client.get(detail(stripe))
        assert shown.status_code == 200
        assert shown.json() == stripe | {"updated_at": shown.json()["updated_at"]}
        for response in (listed, shown):
            assert STRIPE_KEY not in response.content.decode()
            assert STRIPE_SECRET not in response.content.decode()

    @pytest.mark.parametrize(
        ("vendor", "credentials", "path"),
        [
            ("webhook", {}, "/upstream/{pk}/webhook/"),
            ("twilio", {"account_sid": "AC1", "auth_token": "tok"}, "/upstream/twilio/{pk}/"),
            ("sendgrid", {"api_key": "SG.x"}, "/upstream/sendgrid/{pk}/events/"),
            ("paypal", {"client_id": "id", "client_secret": "s"}, "/storefront/paypal/{pk}/webhook/"),
            ("banking", {"api_key": "bk"}, "/banking/default/{pk}/webhook/"),
            ("smtp", {"host": "smtp.example.com"}, None),
            ("openai", {"api_key": "sk-x"}, None),
        ],
    )
    def test_the_inbound_url_is_the_vendors_endpoint_or_null(self, owner, vendor, credentials, path):
        response = create(owner, vendor=vendor, credentials=credentials)
        assert response.status_code == 201, response.content
        pk = response.json()["id"]
        expected = None if path is None else "http://testserver" + path.format(pk=pk)
        assert response.json()["inbound_url"] == expected

    def test_the_same_name_is_fine_for_another_vendor_or_another_org(self, owner, outsider, stripe):
        assert create(owner, vendor="sendgrid", credentials={"api_key": "SG.x"}).status_code == 201
        assert create(outsider).status_code == 201


# --- input checks ------------------------------------------------------------------------------------


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field", "words"),
        [
            ({"vendor": "mailchimp"}, "vendor", "not a valid choice"),
            ({"credentials": "sk_test_x"}, "credentials", "object"),
            ({"credentials": ["api_key"]}, "credentials", "object"),
            ({"credentials": {}}, "credentials.api_key", "Required for stripe"),
            ({"credentials": {"api_key": 12345}}, "credentials.api_key", "string"),
            ({"credentials": {"api_key": "  "}}, "credentials.api_key", "blank"),
            (
                {"credentials": {"api_key": "k", "password": "p"}},
                "credentials.password",
                "Unknown credential",
            ),
            ({"credentials": {"api_key": "k" * 5000}}, "credentials.api_key", "At most"),
            ({"name": ""}, "name", "blank"),
            ({"name": "x" * 101}, "name", "no more than 100"),
            ({"webhook_secret": "not-a-stripe-secret"}, "webhook_secret", "whsec_"),
            ({"base_url": "http://169.254.169.254/latest/"}, "base_url", "link-local"),
            ({"base_url": "http://127.0.0.1:8080/"}, "base_url", "loopback"),
            ({"base_url": "http://10.1.2.3/"}, "base_url", "private"),
            ({"base_url": "https://user:pw@93.184.216.34/"}, "base_url", "credentials in the URL"),
            ({"base_url": "ftp://93.184.216.34/"}, "base_url", "only http and https"),
            ({"base_url": "not a url"}, "base_url", "valid URL"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, owner, body, field, words):
        response = create(owner, **body)

        assert response.status_code == 400, response.content
        errors: Any = response.json()
        for part in field.split("."):
            errors = errors[part]
        assert any(words in message for message in errors), errors
        assert not Connection.objects.exists()

    def test_a_webhook_secret_for_a_vendor_that_signs_with_its_credentials_is_refused(self, owner):
        response = create(
            owner, vendor="twilio", credentials={"account_sid": "AC1", "auth_token": "t"}, webhook_secret="x"
        )
        assert response.status_code == 400
        assert "not verified with a stored signing secret" in response.json()["webhook_secret"][0]

    @pytest.mark.parametrize("secret", ["whsec_***not base64***", "whsec_c2hvcnQ="])
    def test_a_standard_webhooks_secret_must_be_base64_of_enough_bytes(self, owner, secret):
        response = create(owner, vendor="webhook", credentials={}, webhook_secret=secret)
        assert response.status_code == 400
        assert "Standard Webhooks secret" in response.json()["webhook_secret"][0]

    def test_a_duplicate_name_is_a_400_not_a_500(self, owner, stripe):
        response = create(owner)
        assert response.status_code == 400
        assert "already has a stripe connection named 'main'" in response.json()["name"][0]
        assert Connection.objects.count() == 1

    def test_a_public_base_url_is_accepted_and_the_allow_list_opens_local_ones(self, owner, settings):
        assert create(owner, name="public", base_url="https://93.184.216.34/").status_code == 201
        settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        assert create(owner, name="local", base_url="http://127.0.0.1:9/").status_code == 201

    @pytest.mark.parametrize("raw", ['{"vendor": "stripe",', "[]", "null"])
    def test_malformed_or_wrongly_shaped_json_is_a_400(self, owner, raw):
        response = owner.client.post(LIST, raw, content_type="application/json")
        assert response.status_code == 400


# --- changes ---------------------------------------------------------------------------------------


class TestUpdate:
    def test_patch_replaces_the_credentials_whole_and_changes_name_url_and_enabled(self, owner, stripe):
        new_key = "sk_test_rotatedKey999"
        response = owner.client.patch(
            detail(stripe),
            {"credentials": {"api_key": new_key}, "name": "primary", "enabled": False,
             "base_url": "https://93.184.216.34/"},
            format="json",
        )  # fmt: skip

        assert response.status_code == 200, response.content
        assert new_key not in response.content.decode()
        connection = Connection.objects.get(pk=stripe["id"])
        assert connection.credentials == {"api_key": new_key}
        assert (connection.name, connection.enabled, connection.base_url) == (
            "primary", False, "https://93.184.216.34/",
        )  # fmt: skip
        assert connection.signing_secrets() == [STRIPE_SECRET]

    def test_patch_validates_like_create(self, owner, stripe):
        bad = owner.client.patch(detail(stripe), {"credentials": {"token": "x"}}, format="json")
        assert bad.status_code == 400
        assert set(bad.json()["credentials"]) == {"api_key", "token"}
        url = owner.client.patch(detail(stripe), {"base_url": "http://[::1]/"}, format="json")
        assert url.status_code == 400 and "loopback" in url.json()["base_url"][0]
        assert Connection.objects.get(pk=stripe["id"]).credentials == {"api_key": STRIPE_KEY}

    def test_patch_refuses_a_vendor_change_or_secrets_and_put_is_not_allowed(self, owner, stripe):
        vendor = owner.client.patch(detail(stripe), {"vendor": "sendgrid"}, format="json")
        assert vendor.status_code == 400 and "cannot change" in vendor.json()["vendor"][0]
        secret = owner.client.patch(detail(stripe), {"webhook_secret": new_whsec()}, format="json")
        assert secret.status_code == 400 and "/secrets/" in secret.json()["webhook_secret"][0]
        assert owner.client.put(detail(stripe), {"name": "x"}, format="json").status_code == 405

    def test_renaming_onto_another_connections_name_is_a_400(self, owner, stripe):
        other = create(owner, name="backup").json()
        response = owner.client.patch(detail(other), {"name": "main"}, format="json")
        assert response.status_code == 400 and "already has" in response.json()["name"][0]

    def test_delete_removes_the_connection_and_keeps_its_inbox_rows(self, owner, stripe):
        connection = Connection.objects.get(pk=stripe["id"])
        row = InboundWebhook.objects.create(
            vendor=Vendor.STRIPE, connection=connection, org=owner.org, body=b"{}", status="rejected"
        )
        assert owner.client.delete(detail(stripe)).status_code == 204
        assert not Connection.objects.filter(pk=stripe["id"]).exists()
        row.refresh_from_db()
        assert row.connection_id is None and row.org == owner.org


# --- secret rotation ---------------------------------------------------------------------------------


class TestSecrets:
    def test_adding_a_secret_keeps_both_active_and_both_verify(self, owner):
        first, second = new_whsec(), new_whsec()
        created = create(owner, vendor="webhook", credentials={}, webhook_secret=first).json()

        added = owner.client.post(detail(created, "secrets/"), {"secret": second}, format="json")

        assert added.status_code == 201, added.content
        assert added.json()["id"] == fp(second) and second not in added.content.decode()
        shown = owner.client.get(detail(created)).json()
        assert [s["id"] for s in shown["webhook_secrets"]] == [fp(first), fp(second)]
        body = as_body({"type": "ping", "data": {}})
        for n, secret in enumerate((first, second)):
            headers = standard_headers(secret, body, msg_id=f"msg_rot_{n}")
            response = Client().post(
                f"/upstream/{created['id']}/webhook/", data=body, content_type="application/json", **headers
            )
            assert response.status_code == 200, response.content

    def test_removing_a_secret_by_fingerprint_stops_it_verifying(self, owner):
        old, new = new_whsec(), new_whsec()
        created = create(owner, vendor="webhook", credentials={}, webhook_secret=old).json()
        owner.client.post(detail(created, "secrets/"), {"secret": new}, format="json")

        assert owner.client.delete(detail(created, f"secrets/{fp(old)}/")).status_code == 204

        assert Connection.objects.get(pk=created["id"]).signing_secrets() == [new]
        body = as_body({"type": "ping", "data": {}})
        response = Client().post(
            f"/upstream/{created['id']}/webhook/", data=body, content_type="application/json",
            **standard_headers(old, body, msg_id="msg_old"),
        )  # fmt: skip
        assert response.status_code == 400

    def test_the_last_secret_cannot_be_removed_an_unknown_one_is_404(self, owner, stripe):
        last = owner.client.delete(detail(stripe, f"secrets/{fp(STRIPE_SECRET)}/"))
        assert last.status_code == 409
        assert "only webhook signing secret" in last.json()["detail"]
        assert owner.client.delete(detail(stripe, "secrets/00000000/")).status_code == 404
        assert Connection.objects.get(pk=stripe["id"]).signing_secrets() == [STRIPE_SECRET]

    def test_a_duplicate_a_malformed_or_a_sixth_secret_is_a_400(self, owner, stripe):
        path = detail(stripe, "secrets/")
        duplicate = owner.client.post(path, {"secret": STRIPE_SECRET}, format="json")
        assert duplicate.status_code == 400 and "already active" in duplicate.json()["secret"][0]
        assert owner.client.post(path, {"secret": "nope"}, format="json").status_code == 400
        assert owner.client.post(path, {}, format="json").status_code == 400
        for n in range(4):
            assert owner.client.post(path, {"secret": f"whsec_more{n}"}, format="json").status_code == 201
        sixth = owner.client.post(path, {"secret": "whsec_sixth"}, format="json")
        assert sixth.status_code == 400 and "At most 5" in sixth.json()["secret"][0]


# --- the vendor check ---------------------------------------------------------------------------------


class _StripeHandler(BaseHTTPRequestHandler):
    """Stripe's GET /v1/balance: 200 with a balance for the right key, 401 Stripe-style otherwise."""

    key = ""

    def do_GET(self) -> None:
        if self.path != "/v1/balance":
            self._answer(
                404, {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}
            )
        elif self.headers.get("Authorization") != f"Bearer {self.key}":
            self._answer(
                401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
            )
        else:
            self._answer(200, {"object": "balance", "available": [{"amount": 0, "currency": "usd"}]})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_stripe(settings) -> Iterator[str]:
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    handler = type("Handler", (_StripeHandler,), {"key": STRIPE_KEY})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class TestCheck:
    def test_a_check_calls_the_vendor_and_shows_the_refreshed_health(self, owner, local_stripe):
        good = create(owner, base_url=local_stripe).json()

        response = owner.client.post(detail(good, "check/"))

        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["ok"], body["status"]) == (True, 200)
        assert body["connection"]["health"] == "healthy"
        assert body["connection"]["last_success_at"] is not None
        assert STRIPE_KEY not in response.content.decode()

    def test_rejected_credentials_show_as_a_failing_check(self, owner, local_stripe):
        bad = create(
            owner, name="bad", credentials={"api_key": "sk_test_wrong"}, base_url=local_stripe
        ).json()

        body = owner.client.post(detail(bad, "check/")).json()

        assert (body["ok"], body["status"]) == (False, 401)
        assert "credentials rejected" in body["detail"]
        assert body["connection"]["health"] == "failing"
        assert body["connection"]["circuit_state"] == CircuitState.CLOSED
        assert "sk_test_wrong" not in json.dumps(body)


# --- who may ---------------------------------------------------------------------------------------


def _routes(connection: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("get", LIST, None),
        ("post", LIST, {"vendor": "stripe", "name": "m2", "credentials": {"api_key": "k"}}),
        ("get", detail(connection), None),
        ("patch", detail(connection), {"name": "renamed"}),
        ("delete", detail(connection), None),
        ("post", detail(connection, "secrets/"), {"secret": "whsec_another"}),
        ("delete", detail(connection, f"secrets/{fp(STRIPE_SECRET)}/"), None),
        ("post", detail(connection, "check/"), None),
    ]


class TestWhoMay:
    def test_a_member_gets_403_on_every_route(self, member, stripe):
        for method, path, body in _routes(stripe):
            response = getattr(member.client, method)(path, body, format="json")
            assert response.status_code == 403, (method, path, response.content)
            assert "owners and admins" in response.json()["detail"]
        connection = Connection.objects.get(pk=stripe["id"])
        assert (connection.name, connection.signing_secrets()) == ("main", [STRIPE_SECRET])
        assert Connection.objects.count() == 1

    def test_another_orgs_connection_is_a_404_on_every_route(self, outsider, stripe):
        for method, path, body in _routes(stripe)[2:]:
            response = getattr(outsider.client, method)(path, body, format="json")
            assert response.status_code == 404, (method, path, response.content)
        assert outsider.client.get(LIST).json()["results"] == []
        outsider.client.credentials(HTTP_AUTHORIZATION=f"Token {outsider.key}", HTTP_X_ORG="acme")
        assert outsider.client.get(LIST).status_code == 404
        connection = Connection.objects.get(pk=stripe["id"])
        assert (connection.name, connection.signing_secrets()) == ("main", [STRIPE_SECRET])

    def test_no_token_is_a_401(self, stripe):
        assert Client().get(LIST).status_code == 401


# --- monitoring ------------------------------------------------------------------------------------

MONITORING = "/monitoring/connections/"


def attempt(connection: Connection, status: int | None, latency_ms: float, *, hours_ago: float = 0) -> None:
    row = HttpAttempt.objects.create(
        org=connection.org, connection=connection, method="GET", url="https://api.stripe.com/v1/balance",
        status=status, latency_ms=latency_ms, error="" if status else "ConnectTimeout: timed out",
    )  # fmt: skip
    if hours_ago:
        HttpAttempt.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=hours_ago))


class TestMonitoring:
    def test_it_shows_health_and_the_last_24_hours_of_attempts(
        self, owner, stripe, django_assert_max_num_queries
    ):
        connection = Connection.objects.get(pk=stripe["id"])
        quiet = Connection.objects.create(org=owner.org, vendor=Vendor.SENDGRID, name="mail")
        for status, latency in (
            (200, 10.0),
            (200, 30.0),
            (500, 50.0),
            (429, 70.0),
            (404, 20.0),
            (None, 90.0),
        ):
            attempt(connection, status, latency)
        attempt(connection, 500, 999.0, hours_ago=25)  # outside the window
        Connection.objects.filter(pk=connection.pk).update(
            consecutive_failures=2, last_error="HTTP 500", last_failure_at=timezone.now()
        )

        # The caller's membership (2), then the connections and one aggregate query.
        with django_assert_max_num_queries(6):
            response = owner.client.get(MONITORING)

        assert response.status_code == 200, response.content
        rows = {row["name"]: row for row in response.json()["connections"]}
        assert rows["main"] | {"last_failure_at": None} == {
            "id": str(connection.pk), "org": "acme", "vendor": "stripe", "name": "main", "enabled": True,
            "health": "failing", "circuit_state": "closed", "consecutive_failures": 2,
            "last_success_at": None, "last_failure_at": None, "last_error": "HTTP 500",
            "attempts_24h": 6, "failures_24h": 3, "client_errors_24h": 1, "p50_latency_ms": 40.0,
        }  # fmt: skip
        assert rows["mail"]["attempts_24h"] == 0 and rows["mail"]["p50_latency_ms"] is None
        assert response.json()["window_hours"] == 24
        assert STRIPE_KEY not in response.content.decode()
        assert str(quiet.pk) == rows["mail"]["id"]

    def test_members_get_403_and_other_orgs_see_none_of_it(self, member, outsider, stripe):
        assert member.client.get(MONITORING).status_code == 403
        assert outsider.client.get(MONITORING).json()["connections"] == []
        outsider.client.credentials(HTTP_AUTHORIZATION=f"Token {outsider.key}", HTTP_X_ORG="acme")
        assert outsider.client.get(MONITORING).status_code == 404

    def test_staff_see_every_orgs_connections(self, outsider, stripe):
        create(outsider, name="theirs")
        staff = staff_caller()
        rows = staff.client.get(MONITORING).json()["connections"]
        assert sorted((row["org"], row["name"]) for row in rows) == [("acme", "main"), ("globex", "theirs")]
