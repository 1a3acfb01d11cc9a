"""Tenancy: users, orgs, memberships with a role, sites, API tokens, and the org-owned BaseModel."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.validators import RegexValidator
from django.db import models

from core.event_names import SystemEvents

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and inner hyphens.",
)
DOMAIN_VALIDATOR = RegexValidator(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    "Enter a lowercase host name such as shop.example.com.",
)


class CrudEvents:
    """The system events a repository-managed model emits on create, update and delete."""

    def __init__(self, create: SystemEvents, update: SystemEvents, delete: SystemEvents) -> None:
        self.create, self.update, self.delete = create, update, delete


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self.db)  # the database of db_manager(), if one was named
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A person; signs in with an email address. Belongs to orgs through memberships."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = None  # type: ignore[assignment]
    email = models.EmailField(unique=True)
    # The org a request without X-Org acts in; set by the first membership, never by a later one.
    default_org = models.ForeignKey(
        "core.Org", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects = UserManager()  # type: ignore[assignment,misc]

    crud_events = CrudEvents(SystemEvents.USER_CREATE, SystemEvents.USER_UPDATE, SystemEvents.USER_DELETE)
    # Never copied into an event snapshot (the default org is another org's business).
    snapshot_exclude: ClassVar[frozenset[str]] = frozenset({"password", "default_org"})

    class Meta:
        ordering = ("email",)

    def __str__(self) -> str:
        return self.email


class Org(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=50, unique=True, validators=[SLUG_VALIDATOR])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    crud_events = CrudEvents(SystemEvents.ORG_CREATE, SystemEvents.ORG_UPDATE, SystemEvents.ORG_DELETE)
    snapshot_exclude: ClassVar[frozenset[str]] = frozenset()

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "org"], name="membership_user_org_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.org_id} as {self.role}"

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


class ApiToken(models.Model):
    """An API key. Only its SHA-256 is stored; the key itself is shown once, when issued."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=8, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user: User, name: str = "default") -> tuple[ApiToken, str]:
        key = secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=key[:8], key_hash=cls.hash_key(key))
        return token, key


class BaseModel(models.Model):
    """An org-owned row: UUID pk, org, datatype, timestamps, created_by."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="+")
    datatype = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    snapshot_exclude: ClassVar[frozenset[str]] = frozenset()

    class Meta:
        abstract = True


COLLECTION_EVENTS = CrudEvents(
    SystemEvents.COLLECTION_CREATE, SystemEvents.COLLECTION_UPDATE, SystemEvents.COLLECTION_DELETE
)


class DatatypeModel(BaseModel):
    """An org-owned row of an app's own datatype: DATATYPE, whatever the caller set; its writes
    emit the spec's collection-create|update|delete, as generic records' do."""

    DATATYPE: ClassVar[str]

    crud_events = COLLECTION_EVENTS

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.datatype = self.DATATYPE
        super().save(*args, **kwargs)


class Site(BaseModel):
    name = models.CharField(max_length=200, blank=True)
    domain = models.CharField(max_length=253, unique=True, validators=[DOMAIN_VALIDATOR])

    crud_events = CrudEvents(SystemEvents.SITE_CREATE, SystemEvents.SITE_UPDATE, SystemEvents.SITE_DELETE)

    class Meta:
        ordering = ("domain",)

    def __str__(self) -> str:
        return self.domain
