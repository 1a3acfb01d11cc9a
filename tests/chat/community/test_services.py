"""The community's services: gap-free seqs under concurrent posts, client_id per sender, bans,
and every write's event row."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections

from chat.community import services
from chat.community.models import RoomBan, RoomMessage
from core.models import EventRecord, Role
from tests.factories import make_user


@pytest.mark.django_db
def test_each_write_has_its_event_row(room, owner):
    message, _ = services.message_post(room=room, person=services.member_person(owner.user), text="hi")
    services.message_delete(message=message, actor=owner.user)
    datatypes = list(EventRecord.objects.filter(orgid=owner.org.pk).values_list("datatype", "name"))
    assert ("community-room", "collection-create") in datatypes
    assert ("community-message", "collection-create") in datatypes
    assert ("community-message", "collection-update") in datatypes


@pytest.mark.django_db
def test_a_client_id_is_the_senders_own(room, owner, member):
    mine, created = services.message_post(
        room=room, person=services.member_person(owner.user), text="a", client_id="1"
    )
    theirs, also = services.message_post(
        room=room, person=services.member_person(member.user), text="b", client_id="1"
    )
    again, third = services.message_post(
        room=room, person=services.member_person(owner.user), text="a", client_id="1"
    )
    assert (created, also, third) == (True, True, False) and again.pk == mine.pk and theirs.seq == 2


@pytest.mark.django_db
def test_bans_refuse_posts_and_spare_admins(room, owner, member, admin, contact):
    with pytest.raises(ValidationError):
        services.ban_create(org=owner.org, actor=owner.user, room=room, user=admin.user)
    with pytest.raises(ValidationError):
        services.ban_create(org=owner.org, actor=owner.user, room=room)
    services.ban_create(org=owner.org, actor=owner.user, room=None, contact=contact, reason="spam")
    with pytest.raises(services.Banned):
        services.message_post(room=room, person=services.contact_person(contact), text="hello")
    assert RoomBan.objects.get().created_by == owner.user
    assert not services.is_banned(room=room, person=services.member_person(member.user))


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_take_gap_free_seqs(room, owner):
    writers = [make_user(owner.org, Role.MEMBER) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(writers))

    def write(user) -> None:
        try:
            barrier.wait()
            for n in range(5):
                services.message_post(room=room, person=services.member_person(user), text=f"{n}")
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(user,)) for user in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = list(RoomMessage.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 31)), connection.vendor
    room.refresh_from_db()
    assert room.last_seq == 30
