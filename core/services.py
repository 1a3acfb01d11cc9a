"""Writes of the core app: records, orgs, sites and users. Every one goes through the repository."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import transaction

from core import repository
from core.events import SystemEvents
from core.locking import lock
from core.models import Membership, Org, Record, RecordStatus, Role, Site, User


class Conflict(Exception):
    """The request is valid but the record's state does not allow it (HTTP 409)."""


# --- collection records --------------------------------------------------------------------


def record_create(*, org: Org, actor: User | None, datatype: str, data: dict[str, Any]) -> Record:
    return repository.create(Record, org=org, actor=actor, datatype=datatype, data=data)


def record_update(*, record: Record, actor: User | None, data: dict[str, Any]) -> Record:
    return repository.update(record, org=record.org, actor=actor, data=data)


def record_delete(*, record: Record, actor: User | None) -> None:
    repository.delete(record, org=record.org, actor=actor)


def record_publish(*, record: Record, actor: User | None) -> Record:
    return _transition(
        record, actor, RecordStatus.DRAFT, RecordStatus.PUBLISHED, SystemEvents.COLLECTION_PUBLISH
    )


def record_approve(*, record: Record, actor: User | None) -> Record:
    return _transition(
        record, actor, RecordStatus.PUBLISHED, RecordStatus.APPROVED, SystemEvents.COLLECTION_APPROVE
    )


_WHAT: dict[str, str] = {RecordStatus.DRAFT: "a draft", RecordStatus.PUBLISHED: "a published record"}


def _transition(record: Record, actor: User | None, source: str, target: str, event: SystemEvents) -> Record:
    # The row is locked while its status is checked, so of two concurrent publishes one
    # wins and the other is a 409 (on SQLite the IMMEDIATE transaction serializes them).
    with transaction.atomic():
        record = lock(Record.objects.select_related("org"), pk=record.pk)
        if record.status != source:
            raise Conflict(f"Only {_WHAT[source]} can be {target}; this record is {record.status}.")
        return repository.update(record, org=record.org, actor=actor, event=event, status=target)


# --- orgs ----------------------------------------------------------------------------------


def org_create(*, actor: User, slug: str, name: str = "") -> Org:
    """Create an org owned by `actor`: emits org-create, then user-create as the owner joins it."""

    def add_owner(org: Org) -> dict[str, Any]:
        Membership.objects.create(user=actor, org=org, role=Role.OWNER)
        return {"owner": str(actor.pk)}

    with transaction.atomic():
        org = repository.create(Org, org=None, actor=actor, extra=add_owner, slug=slug, name=name or slug)
        repository.update(
            actor, org=org, actor=actor, event=SystemEvents.USER_CREATE, extra={"role": Role.OWNER}
        )
    return org


def org_create_with_owner(*, slug: str, owner_email: str, name: str = "") -> tuple[Org, User]:
    """Bootstrap (`manage.py create_org`): the org, and its owner's account if it has none yet."""
    email = User.objects.normalize_email(owner_email).lower()
    with transaction.atomic():
        owner = User.objects.filter(email=email).first() or User.objects.create_user(email)
        return org_create(actor=owner, slug=slug, name=name), owner


def org_update(*, org: Org, actor: User | None, **fields: Any) -> Org:
    return repository.update(org, org=org, actor=actor, **fields)


def org_delete(*, org: Org, actor: User | None) -> None:
    repository.delete(org, org=None, actor=actor)


# --- sites ---------------------------------------------------------------------------------


def site_create(*, org: Org, actor: User | None, domain: str, name: str = "") -> Site:
    return repository.create(Site, org=org, actor=actor, datatype="site", domain=domain.lower(), name=name)


def site_update(*, site: Site, actor: User | None, **fields: Any) -> Site:
    if "domain" in fields:
        fields["domain"] = fields["domain"].lower()
    return repository.update(site, org=site.org, actor=actor, **fields)


def site_delete(*, site: Site, actor: User | None) -> None:
    repository.delete(site, org=site.org, actor=actor)


# --- users ---------------------------------------------------------------------------------


def user_create(
    *,
    org: Org,
    actor: User | None,
    email: str,
    role: str = Role.MEMBER,
    first_name: str = "",
    last_name: str = "",
    password: str | None = None,
) -> User:
    """Add a user to the org: a new account, or an existing one (by email) given a membership."""
    email = User.objects.normalize_email(email).lower()
    with transaction.atomic():
        existing = User.objects.select_for_update().filter(email=email).first()
        if existing is not None:
            if Membership.objects.filter(user=existing, org=org).exists():
                raise Conflict(f"{email} is already a member of this organization.")
            Membership.objects.create(user=existing, org=org, role=role)
            return repository.update(
                existing, org=org, actor=actor, event=SystemEvents.USER_CREATE, extra={"role": role}
            )

        def join(user: User) -> dict[str, Any]:
            Membership.objects.create(user=user, org=org, role=role)
            return {"role": role}

        return repository.create(
            User,
            org=org,
            actor=actor,
            extra=join,
            email=email,
            first_name=first_name,
            last_name=last_name,
            password=make_password(password),  # None makes an unusable password
        )


def user_update(*, org: Org, actor: User | None, user: User, role: str | None = None, **fields: Any) -> User:
    with transaction.atomic():
        membership = lock(Membership.objects, user=user, org=org)
        if role is not None and role != membership.role:
            if membership.role == Role.OWNER and _owners(org) == 1:
                raise Conflict("The organization's last owner cannot change role; make another owner first.")
            membership.role = role
            membership.save(update_fields=["role"])
        return repository.update(user, org=org, actor=actor, extra={"role": membership.role}, **fields)


def user_delete(*, org: Org, actor: User | None, user: User) -> None:
    """Remove the user from the org; the account itself goes once it belongs to no org."""
    with transaction.atomic():
        membership = lock(Membership.objects, user=user, org=org)
        if membership.role == Role.OWNER and _owners(org) == 1:
            raise Conflict("The organization's last owner cannot be removed.")
        membership.delete()
        if user.memberships.exists():
            repository.update(
                user, org=org, actor=actor, event=SystemEvents.USER_DELETE, extra={"role": None}
            )
        else:
            repository.delete(user, org=org, actor=actor, extra={"role": None})


def _owners(org: Org) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).count()
