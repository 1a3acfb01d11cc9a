"""The OpenAPI schema describes the API as it behaves: error statuses with their bodies, page
sizes, base URLs, booleans that are booleans, and JSON 404s for URLs no route matches."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from automation.api import serializers as automation_serializers
from core.api import serializers as core_serializers
from core.api.fields import StrictBooleanField
from sync.inbox import serializers as inbox_serializers
from sync.models import Vendor
from sync.monitoring import serializers as monitoring_serializers
from sync.upstream import connections
from sync.upstream import serializers as upstream_serializers

UNSAFE = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_the_schema_generates_without_a_warning(tmp_path: Any) -> None:
    """A warning means a name drf-spectacular had to guess (an enum called `StatusDe4Enum`, say):
    a client generated from the schema would carry it."""
    call_command("spectacular", "--file", str(tmp_path / "schema.yml"), "--fail-on-warn")


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_documents_the_errors_it_can_answer_with_a_json_body(schema):
    for path, method, operation in _operations(schema):
        responses, where = operation["responses"], {p["in"] for p in operation.get("parameters", [])}
        expected = {"403"}
        if all(operation.get("security", [{}])):  # no anonymous alternative: it needs credentials
            expected.add("401")
        if "requestBody" in operation:
            expected |= {"400", "413"}
        if method in UNSAFE:
            expected.add("409")
        if "path" in where:
            expected.add("404")
        assert expected <= responses.keys(), (method, path, sorted(responses))
        for status in {code for code in responses if code.startswith("4")}:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in ("Error", "ValidationError"), (method, path, status)
    components = schema["components"]["schemas"]
    assert components["Error"]["required"] == ["detail"]
    assert components["ValidationError"]["type"] == "object"


def test_org_scoped_operations_document_the_x_org_header(schema):
    parameters = schema["paths"]["/sites/"]["get"]["parameters"]
    assert {"in": "header", "name": "X-Org"}.items() <= next(
        p for p in parameters if p["name"] == "X-Org"
    ).items()
    catalog = schema["paths"]["/events/catalog/"]["get"].get("parameters", [])
    assert "X-Org" not in {p["name"] for p in catalog}


def test_page_and_page_size_are_documented_as_positive(schema):
    for path in ("/sites/", "/events/"):
        parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
        assert parameters["page_size"]["schema"]["minimum"] == 1
    assert {p["name"]: p for p in schema["paths"]["/sites/"]["get"]["parameters"]}["page"]["schema"][
        "minimum"
    ] == 1


@pytest.mark.parametrize("size", ["0", "000", "-1", "1.5"])
def test_a_page_size_that_is_not_positive_is_a_400(owner, size):
    assert owner.client.get("/sites/", {"page_size": size}).status_code == 400


@pytest.mark.parametrize(("path", "size"), [("/sites/", "1" + "0" * 30), ("/events/", "5000")])
def test_a_page_size_past_the_maximum_is_the_maximum(owner, path, size):
    response = owner.client.get(path, {"page_size": size})

    assert response.status_code == 200, response.content


def test_an_empty_base_url_is_what_the_schema_says_it_may_be(owner, schema):
    connections.connection_create(org=owner.org, vendor=Vendor.WEBHOOK, name="p", credentials={})

    shown = owner.client.get("/upstream/connections/").json()["results"][0]

    assert shown["base_url"] == ""
    alternatives = schema["components"]["schemas"]["Connection"]["properties"]["base_url"]["oneOf"]
    assert {"type": "string", "maxLength": 0} in alternatives


def test_a_url_no_route_matches_is_a_json_404(owner):
    response = owner.client.get("/users/not-a-uuid/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


# --- booleans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, "true", "yes", "on", "True", None, [], {}])
def test_a_json_boolean_is_true_or_false_and_nothing_else(owner, value):
    body = {"vendor": "webhook", "name": "p", "credentials": {}, "enabled": value}

    response = owner.client.post("/upstream/connections/", body, format="json")

    assert response.status_code == 400, response.content
    assert "enabled" in response.json()


def test_json_true_and_false_are_booleans(owner):
    body = {"vendor": "webhook", "name": "p", "credentials": {}, "enabled": False}

    response = owner.client.post("/upstream/connections/", body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["enabled"] is False


@pytest.mark.parametrize(("value", "status"), [("true", 200), ("false", 200), ("1", 400), ("yes", 400)])
def test_a_boolean_in_a_query_string_is_the_text_true_or_false(owner, value, status):
    assert owner.client.get("/upstream/inbox/", {"verified": value}).status_code == status
    assert owner.client.get("/automation/flows/", {"enabled": value}).status_code == status


def test_a_flows_enabled_flag_is_a_boolean_too(owner):
    body = {"name": "n", "enabled": 0, "trigger": {"event": "collection-create"}, "steps": []}

    response = owner.client.post("/automation/flows/", body, format="json")

    assert response.status_code == 400
    assert response.json()["enabled"] == ["Must be a boolean: true or false."]


def _api_serializers() -> list[type[serializers.BaseSerializer[Any]]]:
    modules = (
        core_serializers,
        monitoring_serializers,
        upstream_serializers,
        inbox_serializers,
        automation_serializers,
    )
    return [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, serializers.Serializer) and cls.__module__ == module.__name__
    ]


def test_every_writable_boolean_of_the_api_is_strict():
    found = 0
    for cls in _api_serializers():
        for name, field in cls().fields.items():
            if isinstance(field, serializers.BooleanField) and not field.read_only:
                found += 1
                assert isinstance(field, StrictBooleanField), f"{cls.__name__}.{name}"
    assert found >= 6


# --- NUL characters (Postgres refuses them in jsonb and text: was a 500 there) --------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/collections/lead/", {"data": {"name\u0000": "x"}}),
        ("/collections/lead/", {"data": {"tags": [["x\u0000"]]}}),
        ("/automation/flows/", {"name": "n", "trigger": {"event": "a\u0000"}, "steps": []}),
    ],
)
def test_a_json_string_holding_nul_is_a_400(owner, path, body):
    response = owner.client.post(path, body, format="json")

    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
