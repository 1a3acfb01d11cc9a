"""Tracked email: links rewritten to /t/c/, an open pixel (/t/o/), the unsubscribe link
(/t/u/); each token signed, naming the delivery and the link's index, never a URL."""

from __future__ import annotations

import re

from django.conf import settings
from django.core import signing

from crm.models import Delivery

TOKEN_SALT = "crm.tracking"
HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
MAX_LINKS = 100


def token(delivery: Delivery, link: int | None = None) -> str:
    # Signed, not timestamped: one delivery's link has one token, in the email and ever after.
    return signing.Signer(salt=TOKEN_SALT).sign_object([str(delivery.pk), link], compress=True)


def read_token(value: str) -> tuple[str, int | None] | None:
    """(delivery id, link index) of a token we signed; None for anything else."""
    try:
        found = signing.Signer(salt=TOKEN_SALT).unsign_object(value)
    except signing.BadSignature:
        return None
    ok = (
        isinstance(found, list)
        and len(found) == 2
        and isinstance(found[0], str)
        and (found[1] is None or isinstance(found[1], int))
    )
    return (found[0], found[1]) if ok else None


def tracking_url(kind: str, delivery: Delivery, link: int | None = None) -> str:
    suffix = ".gif" if kind == "o" else "/"
    return f"{settings.PUBLIC_BASE_URL}/t/{kind}/{token(delivery, link)}{suffix}"


def track(delivery: Delivery, html: str) -> tuple[str, list[str]]:
    """The html with its http(s) links pointing at /t/c/ and an open pixel at the end; the
    original links, by index (a click is sent where the stored link says, never where a
    request says)."""
    links: list[str] = []

    def rewrite(match: re.Match[str]) -> str:
        if len(links) >= MAX_LINKS:
            return match.group(0)
        links.append(match.group(3).replace("&amp;", "&"))
        return (
            f"{match.group(1)}{match.group(2)}{tracking_url('c', delivery, len(links) - 1)}{match.group(2)}"
        )

    tracked = HREF.sub(rewrite, html)
    pixel = f'<img src="{tracking_url("o", delivery)}" width="1" height="1" alt="" style="display:none">'
    if re.search(r"</body>", tracked, re.IGNORECASE):
        return re.sub(r"</body>", pixel + "</body>", tracked, count=1, flags=re.IGNORECASE), links
    return tracked + pixel, links
