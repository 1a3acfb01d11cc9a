"""A client's Idempotency-Key for one write, and the response that write got (docs/api.md)."""

from __future__ import annotations

from django.db import models


class IdempotencyKey(models.Model):
    """Written in the write's own transaction, so it exists exactly when the write committed; a
    retry with the same key and request gets the stored response instead of a second write."""

    id = models.BigAutoField(primary_key=True)
    # Whose key: "user:<id>", or "anonymous" for public endpoints.
    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.TextField()
    # SHA-256 of the method, the path with its query and the body: the same key on another
    # request is refused rather than answered with this one's response.
    fingerprint = models.CharField(max_length=64)
    # The response, stored before the transaction commits: a committed key always has one.
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # Its headers and body, Fernet-encrypted (a response may carry a newly generated secret).
    response = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_key_per_scope")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.key})"
