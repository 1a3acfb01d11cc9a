"""The agent tool registry: schemas sent to the model, validation answered to the model, and
every tool scoped to the caller's org."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from pydantic import BaseModel

from automation import tools
from core.models import Role
from core.services import record_create
from crm import services
from crm.models import Contact
from events.services import event_cancel, event_create
from tests.factories import Caller, make_user


def run(who: Caller, name: str, arguments: object) -> dict[str, object]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return tools.run(name, org=who.org, user=who.user, arguments=raw)


def test_the_first_tools_are_registered_with_their_argument_schemas() -> None:
    names = {entry.name for entry in tools.known()}
    assert {
        "crm_search_contacts",
        "crm_create_contact",
        "crm_add_tag",
        "collections_search_records",
        "calendar_upcoming_events",
    } <= names
    schema = tools.get("crm_add_tag").openai_schema()  # type: ignore[union-attr]
    assert schema["type"] == "function"
    parameters = schema["function"]["parameters"]
    assert parameters["required"] == ["contact_id", "tag"]
    assert parameters["properties"]["contact_id"]["format"] == "uuid"


def test_search_contacts_never_reads_another_orgs_contacts(owner: Caller, outsider: Caller) -> None:
    services.contact_create(org=owner.org, actor=owner.user, email="ada@acme.test", first_name="Ada")
    services.contact_create(org=outsider.org, actor=outsider.user, email="ada@globex.test", first_name="Ada")
    found = run(owner, "crm_search_contacts", {"query": "ada"})["result"]
    assert [contact["email"] for contact in found] == ["ada@acme.test"]  # type: ignore[union-attr, index]
    assert [c["email"] for c in run(outsider, "crm_search_contacts", {})["result"]] == ["ada@globex.test"]  # type: ignore[union-attr, index]


def test_add_tag_to_another_orgs_contact_is_not_found_and_changes_nothing(
    owner: Caller, outsider: Caller
) -> None:
    theirs = services.contact_create(org=outsider.org, actor=outsider.user, email="x@globex.test")
    answer = run(owner, "crm_add_tag", {"contact_id": str(theirs.pk), "tag": "vip"})
    assert "No contact" in answer["error"]  # type: ignore[operator]
    assert services.tag_names(theirs) == []
    mine = services.contact_create(org=owner.org, actor=owner.user, email="y@acme.test")
    assert run(owner, "crm_add_tag", {"contact_id": str(mine.pk), "tag": "vip"})["result"] == {
        "contact_id": str(mine.pk),
        "tag": "vip",
        "added": True,
    }
    assert services.tag_names(mine) == ["vip"]


def test_create_contact_lands_in_the_callers_org_and_a_duplicate_is_told_to_the_model(owner: Caller) -> None:
    created = run(owner, "crm_create_contact", {"email": "Grace@Acme.test", "first_name": "Grace"})["result"]
    contact = Contact.objects.get(pk=created["id"])  # type: ignore[index]
    assert (contact.org_id, contact.email, contact.created_by_id) == (
        owner.org.pk,
        "Grace@Acme.test",
        owner.user.pk,
    )
    again = run(owner, "crm_create_contact", {"email": "grace@acme.test"})
    assert "already exists" in again["error"]  # type: ignore[operator]
    assert "email or a phone" in run(owner, "crm_create_contact", {"first_name": "Nobody"})["error"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("crm_add_tag", {"contact_id": "not-a-uuid", "tag": "x"}, "Invalid arguments."),
        ("crm_add_tag", {"tag": "x"}, "Invalid arguments."),
        ("crm_search_contacts", {"limit": 10_000}, "Invalid arguments."),
        ("crm_search_contacts", '{"query": ', "not valid JSON"),
        ("crm_search_contacts", "[1, 2]", "Invalid arguments."),
        ("crm_add_tag", {"contact_id": "00000000-0000-0000-0000-000000000000", "tag": "!!"}, "No contact"),
        ("no_such_tool", {}, "No tool named"),
    ],
)
def test_bad_arguments_from_the_model_are_answered_not_raised(
    owner: Caller, name: str, arguments: object, says: str
) -> None:
    answer = run(owner, name, arguments)
    assert says in answer["error"]  # type: ignore[operator]
    assert "result" not in answer


def test_an_invalid_tag_name_is_explained(owner: Caller) -> None:
    mine = services.contact_create(org=owner.org, actor=owner.user, email="t@acme.test")
    answer = run(owner, "crm_add_tag", {"contact_id": str(mine.pk), "tag": "!!"})
    assert answer["error"] == "Invalid arguments."
    assert "name" in answer["details"]  # type: ignore[operator]


def test_a_user_no_longer_in_the_org_runs_nothing(owner: Caller, outsider: Caller) -> None:
    services.contact_create(org=owner.org, actor=owner.user, email="a@acme.test")
    answer = tools.run("crm_search_contacts", org=owner.org, user=outsider.user, arguments="{}")
    assert "no longer a member" in answer["error"]


def test_search_records_is_scoped_to_the_org_and_datatype(owner: Caller, outsider: Caller) -> None:
    record_create(org=owner.org, actor=owner.user, datatype="product", data={"name": "Lamp"})
    record_create(org=owner.org, actor=owner.user, datatype="recipe", data={"name": "Soup"})
    record_create(org=outsider.org, actor=outsider.user, datatype="product", data={"name": "Chair"})
    found = run(owner, "collections_search_records", {"datatype": "product"})["result"]
    assert [record["data"] for record in found] == [{"name": "Lamp"}]  # type: ignore[union-attr, index]


class Nothing(BaseModel):
    pass


def test_a_member_may_not_run_an_admin_only_tool(owner: Caller) -> None:
    tools.register(
        tools.Tool("test_admin_only", "A tool for admins.", Nothing, lambda c, a: "ran", admin_only=True)
    )
    member = make_user(owner.org, Role.MEMBER)
    assert (
        "needs an admin" in tools.run("test_admin_only", org=owner.org, user=member, arguments="{}")["error"]
    )
    assert tools.run("test_admin_only", org=owner.org, user=owner.user, arguments="{}") == {"result": "ran"}


def test_visitor_tools_are_neither_offered_to_nor_run_for_members(owner: Caller) -> None:
    assert "chat_handoff" not in {entry.name for entry in tools.known()}
    assert {entry.name for entry in tools.known(visitors=True)} == {"chat_handoff"}
    assert tools.unknown_names(["chat_handoff", "crm_add_tag"]) == ["chat_handoff"]
    refused = tools.run("chat_handoff", org=owner.org, user=owner.user, arguments="{}")
    assert "No tool named 'chat_handoff'" in str(refused["error"])
    members = tools.run_for_visitor("crm_add_tag", org=owner.org, scope={}, arguments="{}")
    assert str(members["error"]) == "No tool named 'crm_add_tag'. Available: chat_handoff."


def test_upcoming_events_lists_only_the_callers_scheduled_future_events(
    owner: Caller, outsider: Caller
) -> None:
    now = timezone.now()
    day = [now + timedelta(days=n) for n in range(60)]
    event_create(
        org=owner.org,
        actor=None,
        title="Old",
        starts_at=now - timedelta(days=2),
        ends_at=now - timedelta(days=1),
    )
    off = event_create(org=owner.org, actor=None, title="Off", starts_at=day[1], ends_at=day[2])
    event_cancel(event=off, actor=None)
    event_create(org=outsider.org, actor=None, title="Globex summit", starts_at=day[1], ends_at=day[2])
    event_create(
        org=owner.org,
        actor=None,
        title="Launch",
        timezone="Asia/Tokyo",
        location="Tokyo",
        starts_at=day[2],
        ends_at=day[3],
    )
    event_create(org=owner.org, actor=None, title="Retreat", starts_at=day[45], ends_at=day[46])

    found = run(owner, "calendar_upcoming_events", {})["result"]
    assert [event["title"] for event in found] == ["Launch"]  # type: ignore[union-attr, index]
    launch = found[0]  # type: ignore[index]
    assert launch["timezone"] == "Asia/Tokyo" and launch["location"] == "Tokyo"
    assert launch["local_start"].endswith(day[2].astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M"))
    assert [e["title"] for e in run(owner, "calendar_upcoming_events", {"days": 60})["result"]] == [  # type: ignore[union-attr, index]
        "Launch",
        "Retreat",
    ]
    assert (
        run(owner, "calendar_upcoming_events", {"days": 60, "query": "tokyo"})["result"][0]["title"]
        == "Launch"
    )  # type: ignore[index]
    assert [e["title"] for e in run(outsider, "calendar_upcoming_events", {})["result"]] == ["Globex summit"]  # type: ignore[union-attr, index]
    assert run(owner, "calendar_upcoming_events", {"days": 0})["error"] == "Invalid arguments."
