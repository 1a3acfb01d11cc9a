"""Writes of the core app: records, orgs, sites and users. Every one goes through the repository."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import datatypes, repository
from core.events import SystemEvents
from core.locking import lock
from core.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Org,
    Record,
    RecordStatus,
    Role,
    Site,
    User,
)


class Conflict(Exception):
    """The request is valid but the record's state does not allow it (HTTP 409)."""


class Gone(Exception):
    """The thing asked for existed but can no longer be used: an expired or revoked invitation (HTTP 410)."""


# --- collection records --------------------------------------------------------------------


def record_create(*, org: Org, actor: User | None, datatype: str, data: dict[str, Any]) -> Record:
    datatypes.refuse_reserved(datatype)
    return repository.create(Record, org=org, actor=actor, datatype=datatype, data=data)


def record_update(*, record: Record, actor: User | None, data: dict[str, Any]) -> Record:
    datatypes.refuse_reserved(record.datatype)
    return repository.update(record, org=record.org, actor=actor, data=data)


def record_delete(*, record: Record, actor: User | None) -> None:
    datatypes.refuse_reserved(record.datatype)
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
    datatypes.refuse_reserved(record.datatype)
    with transaction.atomic():
        record = lock(Record.objects.select_related("org"), pk=record.pk)
        if record.status != source:
            raise Conflict(f"Only {_WHAT[source]} can be {target}; this record is {record.status}.")
        return repository.update(record, org=record.org, actor=actor, event=event, status=target)


# --- orgs ----------------------------------------------------------------------------------


def org_create(*, actor: User, slug: str, name: str = "") -> Org:
    """Create an org owned by `actor`: emits org-create, then user-create as the owner joins it."""

    def add_owner(org: Org) -> dict[str, Any]:
        _join(actor, org, Role.OWNER)
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
    """Create a new account as a member of the org. An email that already has an account is a
    Conflict: that account joins only by accepting an invitation (`invitation_create`)."""
    email = User.objects.normalize_email(email).lower()
    with transaction.atomic():
        if User.objects.filter(email=email).exists():
            raise Conflict(f"{email} already has an account; invite it instead.")

        def join(user: User) -> dict[str, Any]:
            _join(user, org, role)
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


def membership_create(*, org: Org, actor: User | None, user: User, role: str = Role.MEMBER) -> Membership:
    """Add an existing account to the org (emits user-create for the org). Only the account's own
    consent (an accepted invitation) or an operator's command may call this."""
    with transaction.atomic():
        # Lock the account so two joins at once agree on its default org; keep the caller's instance.
        user.default_org_id = lock(User.objects, pk=user.pk).default_org_id
        if Membership.objects.filter(user=user, org=org).exists():
            raise Conflict(f"{user.email} is already a member of this organization.")
        membership = _join(user, org, role)
        repository.update(user, org=org, actor=actor, event=SystemEvents.USER_CREATE, extra={"role": role})
    return membership


def _join(user: User, org: Org, role: str) -> Membership:
    membership = Membership.objects.create(user=user, org=org, role=role)
    if user.default_org_id is None:
        # The first org stays the default: joining another never changes where a request
        # without X-Org goes, so the user's existing integrations keep working.
        user.default_org = org
        user.save(update_fields=["default_org"])
    return membership


def user_set_default_org(*, user: User, org: Org) -> User:
    if not Membership.objects.filter(user=user, org=org).exists():
        raise Conflict("You can only make an organization you belong to your default.")
    user.default_org = org
    user.save(update_fields=["default_org"])
    return user


def user_update(*, org: Org, actor: User | None, user: User, role: str | None = None, **fields: Any) -> User:
    with transaction.atomic():
        membership = lock(Membership.objects, user=user, org=org)
        if role is not None and role != membership.role:
            if membership.role == Role.OWNER and owner_count(org) == 1:
                raise Conflict("The organization's last owner cannot change role; make another owner first.")
            membership.role = role
            membership.save(update_fields=["role"])
        return repository.update(user, org=org, actor=actor, extra={"role": membership.role}, **fields)


def user_delete(*, org: Org, actor: User | None, user: User) -> None:
    """Remove the user from the org; the account itself goes once it belongs to no org."""
    with transaction.atomic():
        membership = lock(Membership.objects, user=user, org=org)
        if membership.role == Role.OWNER and owner_count(org) == 1:
            raise Conflict("The organization's last owner cannot be removed.")
        membership.delete()
        if user.default_org_id == org.pk:
            user.default_org = None
            user.save(update_fields=["default_org"])
        if user.memberships.exists():
            repository.update(
                user, org=org, actor=actor, event=SystemEvents.USER_DELETE, extra={"role": None}
            )
        else:
            repository.delete(user, org=org, actor=actor, extra={"role": None})


def owner_count(org: Org) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).count()


# --- invitations ---------------------------------------------------------------------------


def invitation_create(*, org: Org, actor: User | None, email: str, role: str = Role.MEMBER) -> Invitation:
    """Invite an email address to the org. Inviting it again while an invitation is pending
    returns that invitation (same id and token) with the new role and a renewed expiry."""
    email = User.objects.normalize_email(email).lower()
    expires_at = timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS)
    if Membership.objects.filter(org=org, user__email=email).exists():
        raise Conflict(f"{email} is already a member of this organization.")
    with transaction.atomic():
        pending = (
            Invitation.objects.select_for_update()
            .filter(org=org, email=email, status=InvitationStatus.PENDING)
            .first()
        )
        if pending is not None and pending.is_expired:
            _close(pending, InvitationStatus.EXPIRED)
            pending = None
        if pending is not None:
            pending.role, pending.invited_by, pending.expires_at = role, actor, expires_at
            pending.save(update_fields=["role", "invited_by", "expires_at"])
            return pending
        try:
            with transaction.atomic():
                return Invitation.objects.create(
                    org=org, email=email, role=role, invited_by=actor, expires_at=expires_at
                )
        except IntegrityError:
            # A concurrent invite of the same address won the race: it is the one pending.
            return Invitation.objects.get(org=org, email=email, status=InvitationStatus.PENDING)


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """The invited account joins the org with the invitation's role (emits user-create)."""
    with transaction.atomic():
        invitation = _lock_pending(invitation, user)
        membership = membership_create(org=invitation.org, actor=user, user=user, role=invitation.role)
        invitation.accepted_by = user
        _close(invitation, InvitationStatus.ACCEPTED, "accepted_by")
    return membership


def invitation_decline(*, invitation: Invitation, user: User) -> Invitation:
    with transaction.atomic():
        invitation = _lock_pending(invitation, user)
        _close(invitation, InvitationStatus.DECLINED)
    return invitation


def invitation_revoke(*, invitation: Invitation) -> Invitation:
    with transaction.atomic():
        invitation = lock(Invitation.objects, pk=invitation.pk)
        if invitation.status != InvitationStatus.PENDING:
            raise Conflict(f"This invitation is {invitation.status}; only a pending one can be revoked.")
        _close(invitation, InvitationStatus.REVOKED)
    return invitation


def _lock_pending(invitation: Invitation, user: User) -> Invitation:
    invitation = lock(Invitation.objects.select_related("org"), pk=invitation.pk)
    if invitation.email != user.email.lower():
        raise Invitation.DoesNotExist  # another account's invitation: nothing to confirm
    if invitation.status == InvitationStatus.ACCEPTED:
        raise Conflict("This invitation has already been accepted.")
    if invitation.status != InvitationStatus.PENDING:
        raise Gone(f"This invitation was {invitation.status}.")
    if invitation.is_expired:  # it reads as expired; the next invite of the address closes it
        raise Gone("This invitation has expired; ask for a new one.")
    return invitation


def _close(invitation: Invitation, status: str, *fields: str) -> None:
    invitation.move_to(status)
    invitation.save(update_fields=["status", "closed_at", *fields])
