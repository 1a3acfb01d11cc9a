"""The in-process bus: emit / aemit, sync and async listeners, datatype filters, and failures."""

from __future__ import annotations

import asyncio
import uuid

import pydantic
import pytest
from asgiref.sync import async_to_sync

from core import services
from core.events import Envelope, SystemEvents, UndeclaredEventError, aemit, emit, on_event, registry
from core.models import EventRecord, Record, Site
from storefront.events import OrderPlaced

CONTACT = {"contact_id": "c-1", "email": "ada@example.com"}


def test_it_returns_a_sync_listeners_value_from_emit(owner, listen):
    @listen("contact.created")
    def on_contact_created(event: Envelope) -> str:
        return f"welcome {event.data['email']}"

    results = emit("contact.created", org=owner.org, data=CONTACT, actor=owner.user)

    assert "welcome ada@example.com" in results
    row = EventRecord.objects.get(name="contact.created")
    assert row.orgid == owner.org.pk
    assert row.actor == owner.user.pk
    # The payload was validated, so the model's defaults are filled in.
    assert row.data == {**CONTACT, "first_name": "", "last_name": "", "source": "api"}


def test_it_runs_an_async_listener_during_emit(owner, listen):
    heard: list[Envelope] = []

    @listen("contact.created")
    async def on_contact_created(event: Envelope) -> tuple[str, str]:
        await asyncio.sleep(0)
        heard.append(event)
        return ("async", event.data["contact_id"])

    results = emit("contact.created", org=owner.org, data=CONTACT)

    assert ("async", "c-1") in results
    assert [event.name for event in heard] == ["contact.created"]


def test_it_runs_sync_and_async_listeners_with_aemit(owner, listen):
    heard: list[str] = []

    @listen("contact.created")
    def on_contact_created_sync(event: Envelope) -> str:
        heard.append("sync")
        return "sync"

    @listen("contact.created")
    async def on_contact_created_async(event: Envelope) -> str:
        await asyncio.sleep(0)
        heard.append("async")
        return "async"

    results = async_to_sync(aemit)("contact.created", org=owner.org, data=CONTACT, correlation_id="aemit-1")

    assert {"sync", "async"} <= set(results)
    assert sorted(heard) == ["async", "sync"]
    row = EventRecord.objects.get(name="contact.created")
    assert (row.correlation_id, row.data["contact_id"]) == ("aemit-1", "c-1")


def test_it_gives_a_datatype_filtered_listener_only_its_datatype(owner, listen):
    heard: list[str] = []

    @listen(SystemEvents.COLLECTION_CREATE, datatype="lead")
    def on_lead_record_created(event: Envelope) -> str:
        heard.append(event.datatype)
        return "lead-only"

    @listen(SystemEvents.COLLECTION_CREATE, datatype="lead")
    async def on_lead_record_created_async(event: Envelope) -> str:
        heard.append(f"async {event.datatype}")
        return "async lead-only"

    for datatype in ("deal", "lead", "ticket"):
        response = owner.client.post(f"/collections/{datatype}/", {"data": {}}, format="json")
        assert response.status_code == 201
    skipped = emit(SystemEvents.COLLECTION_CREATE, org=owner.org, datatype="deal", data={"id": "x"})
    matched = emit(SystemEvents.COLLECTION_CREATE, org=owner.org, datatype="lead", data={"id": "y"})

    assert sorted(heard) == ["async lead", "async lead", "lead", "lead"]
    assert "lead-only" not in skipped
    assert "async lead-only" not in skipped
    assert {"lead-only", "async lead-only"} <= set(matched)


def test_it_refuses_to_emit_an_undeclared_event(owner):
    with pytest.raises(UndeclaredEventError, match=r"'contact\.exploded' is not declared"):
        emit("contact.exploded", org=owner.org, data={})
    with pytest.raises(UndeclaredEventError):
        async_to_sync(aemit)("contact.exploded", org=owner.org, data={})

    assert not EventRecord.objects.filter(name="contact.exploded").exists()


def test_it_refuses_a_listener_for_an_undeclared_event():
    with pytest.raises(UndeclaredEventError):
        on_event("contact.exploded")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("contact.created", {"email": "ada@example.com"}),  # no contact_id
        ("order.placed", {"order_id": "o-1", "total": 100, "currency": "EURO"}),
        ("order.placed", {"order_id": "o-1", "total": "a lot", "currency": "EUR"}),
        (
            "payment.succeeded",
            {
                "payment_id": "p",
                "amount": 1,
                "currency": "EUR",
                "provider": "cash",
                "provider_reference": "r",
            },
        ),
        ("appointment.booked", {"appointment_id": "a", "starts_at": "soon", "ends_at": "later"}),
    ],
)
def test_it_refuses_a_domain_event_with_an_invalid_payload(owner, listen, name, data):
    heard: list[Envelope] = []

    @listen(name)
    def on_domain_event(event: Envelope) -> None:
        heard.append(event)

    with pytest.raises(pydantic.ValidationError):
        emit(name, org=owner.org, data=data)

    assert heard == []
    assert not EventRecord.objects.filter(name=name).exists()


def test_it_accepts_a_payload_model_instance(owner):
    emit("order.placed", org=owner.org, data=OrderPlaced(order_id="o-1", total=1250, currency="EUR"))

    assert EventRecord.objects.get(name="order.placed").data == {
        "order_id": "o-1",
        "cart_id": None,
        "contact_id": None,
        "total": 1250,
        "currency": "EUR",
    }


def test_it_records_the_causing_event_and_correlation_given_to_emit(owner):
    cause = uuid.uuid4()

    emit(
        "tag.added",
        org=owner.org,
        data={"contact_id": "c", "tag": "vip"},
        correlation_id="job-7",
        causation_id=cause,
    )

    row = EventRecord.objects.get(name="tag.added")
    assert (row.correlation_id, row.causation_id) == ("job-7", cause)


def test_it_reaches_no_log_when_not_persisted(owner, listen):
    @listen("tag.added")
    def on_tag_added(event: Envelope) -> str:
        return event.data["tag"]

    assert "vip" in emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": "vip"}, persist=False)
    assert not EventRecord.objects.filter(name="tag.added").exists()


def test_it_disconnects_a_listener_by_its_dotted_path(owner):
    heard: list[Envelope] = []

    @on_event("tag.added")
    def on_tag_added(event: Envelope) -> None:
        heard.append(event)

    key = f"{on_tag_added.__module__}.{on_tag_added.__qualname__}"
    try:
        emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": "a"})
    finally:
        assert registry.get("tag.added").signal.disconnect(dispatch_uid=key)
    emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": "b"})

    assert [event.data["tag"] for event in heard] == ["a"]


# --- a listener that raises ----------------------------------------------------------------


def test_it_propagates_a_listeners_exception_and_skips_the_listeners_after_it(owner, listen):
    later: list[Envelope] = []

    @listen("tag.added")
    def on_tag_added_fails(event: Envelope) -> None:
        raise RuntimeError("listener failed")

    @listen("tag.added")
    def on_tag_added_later(event: Envelope) -> None:
        later.append(event)

    with pytest.raises(RuntimeError, match="listener failed"):
        emit("tag.added", org=owner.org, data={"contact_id": "c", "tag": "vip"})

    assert later == []


def test_it_rolls_back_the_write_and_its_event_when_a_listener_raises(owner, listen):
    @listen(SystemEvents.COLLECTION_CREATE, datatype="doomed")
    def on_doomed_created(event: Envelope) -> None:
        assert Record.objects.filter(pk=event.record_pk).exists()  # the write is there, uncommitted
        raise RuntimeError("listener failed")

    with pytest.raises(RuntimeError, match="listener failed"):
        services.record_create(org=owner.org, actor=owner.user, datatype="doomed", data={"n": 1})

    assert not Record.objects.filter(datatype="doomed").exists()
    assert not EventRecord.objects.filter(datatype="doomed").exists()
    # Other writes go on as before.
    services.record_create(org=owner.org, actor=owner.user, datatype="lead", data={})
    assert EventRecord.objects.filter(name="collection-create", datatype="lead").count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_commits_nothing_when_a_listener_raises_outside_any_test_transaction(owner, listen):
    @listen(SystemEvents.SITE_CREATE)
    def on_site_created_fails(event: Envelope) -> None:
        raise RuntimeError("listener failed")

    with pytest.raises(RuntimeError):
        services.site_create(org=owner.org, actor=owner.user, domain="doomed.acme.test")

    assert not EventRecord.objects.filter(name="site-create").exists()
    assert not Site.objects.exists()


# --- emit delivers through the event's Django signal ---------------------------------------------


def test_a_receiver_connected_to_the_signal_directly_runs_in_order_with_the_listeners(owner, listen):
    signal = registry.get("tag.added").signal
    order: list[str] = []

    @listen("tag.added")
    def first(event: Envelope) -> str:
        order.append("first")
        return "first"

    def direct(signal, sender, envelope, **kwargs):  # the Django way, no @on_event
        order.append("direct")
        return f"direct:{sender}:{envelope.data['tag']}"

    signal.connect(direct, weak=False, dispatch_uid="test-direct")
    try:

        @listen("tag.added")
        def last(event: Envelope) -> str:
            order.append("last")
            return "last"

        data = {"contact_id": "c-1", "tag": "vip"}
        results = emit("tag.added", org=owner.org, data=data, persist=False)
        sent = [r for _, r in signal.send(sender="tag.added", envelope=_envelope(owner, data))]
    finally:
        signal.disconnect(dispatch_uid="test-direct")

    assert results == ["first", "direct:tag.added:vip", "last"] == sent
    assert order == ["first", "direct", "last"] * 2


def _envelope(owner, data) -> Envelope:
    from core.events.bus import build_envelope

    return build_envelope(
        "tag.added",
        org=owner.org,
        data=data,
        record=None,
        datatype=None,
        actor=None,
        correlation_id=None,
        causation_id=None,
    )[1]


def test_connecting_and_disconnecting_take_effect_on_the_next_emit(owner):
    signal = registry.get("tag.added").signal
    data = {"contact_id": "c-1", "tag": "vip"}
    before = emit("tag.added", org=owner.org, data=data, persist=False)  # a plan is now cached

    signal.connect(lambda **kwargs: "late", weak=False, dispatch_uid="test-late")
    try:
        assert emit("tag.added", org=owner.org, data=data, persist=False) == [*before, "late"]
    finally:
        assert signal.disconnect(dispatch_uid="test-late")
    assert emit("tag.added", org=owner.org, data=data, persist=False) == before


def test_a_weakly_connected_receiver_stops_running_once_it_is_collected(owner):
    import gc

    signal = registry.get("tag.added").signal
    data = {"contact_id": "c-1", "tag": "vip"}

    class Holder:
        def receive(self, **kwargs):
            return "weak"

    holder = Holder()
    signal.connect(holder.receive)  # weak=True, Django's default: the signal keeps no reference
    assert "weak" in emit("tag.added", org=owner.org, data=data, persist=False)

    del holder
    gc.collect()

    assert "weak" not in emit("tag.added", org=owner.org, data=data, persist=False)
