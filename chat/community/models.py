"""Community rooms of an org: the rooms (some public-read), their messages (a gap-free `seq` per
room, removable by moderators) and bans (from one room or the whole org) of members or contacts."""

from __future__ import annotations

from django.db import models

from chat.models import MAX_CLIENT_ID, MAX_NAME, MAX_TEXT
from core.models import DatatypeModel, User

ROOM = "community-room"
MESSAGE = "community-message"
BAN = "community-ban"


class SenderKind(models.TextChoices):
    MEMBER = "member"
    CONTACT = "contact"


class Room(DatatypeModel):
    """A room of the org. Anyone may read a `public_read` one; posting takes a member's or a
    contact's ticket. `last_seq` is its last message's seq."""

    DATATYPE = ROOM

    name = models.CharField(max_length=100)
    description = models.CharField(max_length=1000, blank=True, default="")
    public_read = models.BooleanField(default=False)
    last_seq = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ("name", "id")
        constraints = [models.UniqueConstraint("org", "name", name="community_room_name_unique")]

    def __str__(self) -> str:
        return self.name


class RoomMessage(DatatypeModel):
    """One message of a room: `seq` is 1, 2, 3, ... with no gap. `sender_key` ("member:<id>" or
    "contact:<id>") with `client_id` is unique when given, so a resend is not stored twice. A
    moderator's removal keeps the row (and its seq) and blanks nothing but what readers see."""

    DATATYPE = MESSAGE

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveIntegerField()
    sender_kind = models.CharField(max_length=16, choices=SenderKind.choices)
    sender_user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    sender_contact = models.ForeignKey(
        "crm.Contact", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    sender_key = models.CharField(max_length=100)
    sender_name = models.CharField(max_length=MAX_NAME, blank=True, default="")
    text = models.TextField(max_length=MAX_TEXT)
    client_id = models.CharField(max_length=MAX_CLIENT_ID, blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ("room", "seq")
        constraints = [
            models.UniqueConstraint("room", "seq", name="community_message_seq_unique"),
            models.UniqueConstraint(
                "room",
                "sender_key",
                "client_id",
                condition=~models.Q(client_id=""),
                name="community_message_client_id_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.sender_name}: {self.text[:40]}"


class RoomBan(DatatypeModel):
    """A member (`user`) or a contact banned from one room, or from all the org's rooms (no
    `room`). `created_by` is the moderator, `created_at` when."""

    DATATYPE = BAN

    room = models.ForeignKey(Room, on_delete=models.CASCADE, null=True, blank=True, related_name="bans")
    user = models.ForeignKey(User, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    contact = models.ForeignKey(
        "crm.Contact", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, contact__isnull=True)
                | models.Q(user__isnull=True, contact__isnull=False),
                name="community_ban_one_person",
            ),
        ]

    def __str__(self) -> str:
        who = f"user {self.user_id}" if self.user_id else f"contact {self.contact_id}"
        return f"{who} banned from {self.room or 'every room'}"
