"""Serializers of the CRM API. They check shapes; crm.services validates and writes."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from core.api.serializers import JSONObjectField
from crm.models import Contact, ContactImport, Tag


class ContactSerializer(serializers.ModelSerializer[Contact]):
    email = serializers.CharField(max_length=254, required=False, allow_blank=True)
    phone = serializers.CharField(
        max_length=32, required=False, allow_blank=True, help_text="E.164, such as +14155550123."
    )
    custom_fields = JSONObjectField(required=False, help_text="Free-form fields: a JSON object.")
    consent = JSONObjectField(
        required=False,
        help_text='Per channel (email, sms, push): {"granted": bool, "how": str, "at"?: date-time}. '
        "A write merges per channel; `at` is stamped when `granted` changes and none is given.",
    )
    tags = serializers.SerializerMethodField(help_text="The names of the contact's tags.")

    class Meta:
        model = Contact
        fields = (
            "id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "custom_fields",
            "consent",
            "source",
            "tags",
            "created_at",
            "updated_at",
            "created_by",
        )
        read_only_fields = ("id", "tags", "created_at", "updated_at", "created_by")
        extra_kwargs: dict[str, Any] = {
            "source": {"required": False, "help_text": "Where it came from; set on create only."}
        }

    def get_tags(self, contact: Contact) -> list[str]:
        return sorted(tag.name for tag in contact.tags.all())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if self.instance is not None and "source" in attrs:
            raise serializers.ValidationError(
                {"source": ["Set when the contact is created; it does not change."]}
            )
        return attrs


class TagSerializer(serializers.ModelSerializer[Tag]):
    contacts = serializers.IntegerField(
        source="contact_count", read_only=True, help_text="How many contacts have it."
    )

    class Meta:
        model = Tag
        fields = ("id", "name", "description", "contacts", "created_at", "updated_at", "created_by")
        read_only_fields = ("id", "contacts", "created_at", "updated_at", "created_by")


class TagApplySerializer(serializers.Serializer[Any]):
    tag = serializers.CharField(max_length=64, help_text="The tag's name; created if the org has none by it.")


class ContactImportSerializer(serializers.ModelSerializer[ContactImport]):
    class Meta:
        model = ContactImport
        fields = (
            "id",
            "filename",
            "status",
            "total",
            "done",
            "created",
            "updated",
            "failed",
            "errors",
            "created_at",
            "finished_at",
            "created_by",
        )
        read_only_fields = fields
        extra_kwargs: dict[str, Any] = {
            "errors": {"help_text": 'The first 1000 failed rows: [{"row": line number, "errors": {...}}].'},
            "done": {"help_text": "Rows processed so far, failed ones included."},
        }


class ContactImportUploadSerializer(serializers.Serializer[Any]):
    file = serializers.FileField(
        help_text="A CSV (UTF-8) whose first line names the columns: email and/or phone, first_name, "
        "last_name, tags (separated by ;); any other column goes to custom_fields."
    )
