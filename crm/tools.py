"""The CRM's agent tools: search contacts, create a contact, put a tag on one (automation.tools)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Q
from pydantic import BaseModel, Field

from automation.tools import ToolCaller, ToolError, tool
from crm import services
from crm.models import Contact, ContactSource


class SearchContacts(BaseModel):
    query: str = Field(default="", max_length=200, description="Text in the name, email or phone.")
    tag: str = Field(default="", max_length=64, description="Only contacts with this tag.")
    limit: int = Field(default=10, ge=1, le=25)


class CreateContact(BaseModel):
    email: str = Field(default="", max_length=254)
    phone: str = Field(default="", max_length=32, description="E.164 or a number with its country code.")
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)


class AddTag(BaseModel):
    contact_id: UUID
    tag: str = Field(min_length=1, max_length=64)


def contact_summary(contact: Contact) -> dict[str, Any]:
    return {
        "id": str(contact.pk),
        "email": contact.email,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "tags": services.tag_names(contact),
    }


@tool("crm_search_contacts", "Find the organization's contacts by name, email, phone or tag.")
def search_contacts(caller: ToolCaller, args: SearchContacts) -> list[dict[str, Any]]:
    contacts = Contact.objects.filter(org=caller.org)
    if text := args.query.strip():
        contacts = contacts.filter(
            Q(email__icontains=text)
            | Q(first_name__icontains=text)
            | Q(last_name__icontains=text)
            | Q(phone__contains=text)
        )
    if args.tag.strip():
        contacts = contacts.filter(tags__name__iexact=args.tag.strip())
    return [contact_summary(contact) for contact in contacts.order_by("-created_at", "-id")[: args.limit]]


@tool("crm_create_contact", "Create a contact in the organization (an email or a phone is needed).")
def create_contact(caller: ToolCaller, args: CreateContact) -> dict[str, Any]:
    fields = {name: value for name, value in args.model_dump().items() if value}
    if not fields.get("email") and not fields.get("phone"):
        raise ToolError("Give the contact an email or a phone number.")
    contact = services.contact_create(
        org=caller.org, actor=caller.user, source=ContactSource.AUTOMATION, **fields
    )
    return contact_summary(contact)


@tool("crm_add_tag", "Put a tag on one of the organization's contacts (the tag is created if new).")
def add_tag(caller: ToolCaller, args: AddTag) -> dict[str, Any]:
    contact = Contact.objects.filter(org=caller.org, pk=args.contact_id).first()
    if contact is None:
        raise ToolError(f"No contact with the id {args.contact_id} in this organization.")
    tag, added = services.contact_add_tag(contact=contact, actor=caller.user, name=args.tag)
    return {"contact_id": str(contact.pk), "tag": tag.name, "added": added}
