"""Notifications end to end: notify() -> the org's pool, sent by jobs on a worker -> a local server,
vs a bare loop sending the same messages from this process. Email (SMTP) first, then SMS (Twilio).

Email. Subject: `crm.notify.notify(...)` per email (a Delivery row, one INSERT that is its own
commit; the templates rendered, the html's link tracked; a `send_pooled` run kicked after
commit) sent by a real Celery worker (tests.live.Worker, concurrency 2) through the org's smtp
connection: claimed 50 at a time, SMTP conversation, settle. Baseline: the same subject, text and html sent
from this process by Django's `EmailBackend`, one connection kept open for the whole round.
Both go to one aiosmtpd server in this process; a round's time runs from its first send to the
server holding all of its messages.

SMS. Subject: `notify(channel="sms")` per number (each a contact with SMS consent), sent by the
same worker through the org's twilio connection: claim (suppression and consent checked),
segments counted, the `twilio` library on our guarded client (SSRF guard, breaker, an
HttpAttempt row), settle. Baseline: the same text rendered and sent from this process by a bare
`twilio.rest.Client(...).messages.create` loop (the library's own pooled session). Both go to
one local Twilio Messages API server (tests/crm/twilio_server.py) in this process; a round runs
from its first send to the server having accepted all of its messages.

Bulk (both channels). Subject: `crm.notify.notify_many(...)` for the round's audience (addresses
for email, the consenting contacts for SMS): deliveries kept and queued 50 per commit, each
batch one `send_batch` job that claims its deliveries in one UPDATE and sends them on one
session. This is how a broadcast sends.

Rounds reverse the order every other round (ABC, CBA); the figure is the median messages/s.
Target: ratio >= 0.7.

    .venv/bin/python bench/notify.py [--emails 5000] [--sms 2000] [--channels email,sms]
        [--rounds 4] [--concurrency 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: import from the repository root, not from bench/.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402
from bench._brokers import bench_brokers  # noqa: E402

TARGET_RATIO = 0.7
SUBJECT = "notify() -> worker -> SMTP"
BULK = "notify_many() -> send_batch -> SMTP"
BASELINE = "bare EmailBackend loop, one connection"
TEXT = "Hello {{ contact.first_name }},\n\nour sale starts today."
HTML = (
    "<p>Hello {{ contact.first_name }},</p>"
    '<p><a href="https://shop.example/sale">Our sale</a> starts today.</p>'
)


SMS_SUBJECT = "notify() -> worker -> Twilio API"
SMS_BULK = "notify_many() -> send_batch -> Twilio"
SMS_BASELINE = "bare Client.messages.create loop"
SMS_TEXT = "Hello {{ contact.first_name }}, our sale starts today: reply STOP to opt out."
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-twilio-token"
SENDER = "+14155550100"


def wait_for_messages(inbox: Any, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(inbox.messages) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the SMTP server got {len(inbox.messages)} of {count} messages in time")
        time.sleep(0.01)


def subject_round(org: Any, inbox: Any, n: int, tag: str) -> float:
    from crm.models import Channel
    from crm.notify import Content, notify

    before = len(inbox.messages)
    content = Content(subject="Our sale", text=TEXT, html=HTML)
    started = time.monotonic()
    for i in range(n):
        notify(
            org=org,
            channel=Channel.EMAIL,
            to=f"p{i}-{tag}@example.com",
            content=content,
            source="bench",
            idempotency_key=f"bench-{tag}-{i}",
        )
    wait_for_messages(inbox, before + n, timeout=60 + n * 0.1)
    return n / (time.monotonic() - started)


def bulk_round(org: Any, inbox: Any, n: int, tag: str) -> float:
    from crm.models import Channel
    from crm.notify import Content, notify_many

    before = len(inbox.messages)
    started = time.monotonic()
    notify_many(
        org=org,
        channel=Channel.EMAIL,
        recipients=(f"m{i}-{tag}@example.com" for i in range(n)),
        content=Content(subject="Our sale", text=TEXT, html=HTML),
        source="bench",
        key=f"bench-bulk-{tag}",
    )
    wait_for_messages(inbox, before + n, timeout=60 + n * 0.1)
    return n / (time.monotonic() - started)


def baseline_round(port: int, inbox: Any, n: int, tag: str) -> float:
    from django.core.mail import EmailMultiAlternatives
    from django.core.mail.backends.smtp import EmailBackend

    from crm.notify import contact_context, render

    before = len(inbox.messages)
    started = time.monotonic()
    backend = EmailBackend(host="127.0.0.1", port=port, fail_silently=False)
    backend.open()
    try:
        for i in range(n):
            to = f"b{i}-{tag}@example.com"
            data = {"contact": contact_context(None, to)}
            message = EmailMultiAlternatives(
                "Our sale", render(TEXT, data), "hello@bench.example", [to], connection=backend
            )
            message.attach_alternative(render(HTML, data, html=True), "text/html")
            message.send()
    finally:
        backend.close()
    wait_for_messages(inbox, before + n, timeout=60 + n * 0.1)
    return n / (time.monotonic() - started)


def number(i: int) -> str:
    """The i-th recipient's number (10,000 of them, each a contact with SMS consent)."""
    return f"+1415555{i % 10000:04d}"


def wait_for_sms(server: Any, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(server.messages) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the Twilio server got {len(server.messages)} of {count} SMS in time")
        time.sleep(0.01)


def sms_subject_round(org: Any, server: Any, n: int, tag: str) -> float:
    from crm.models import Channel
    from crm.notify import Content, notify

    before = len(server.messages)
    content = Content(text=SMS_TEXT)
    started = time.monotonic()
    for i in range(n):
        notify(
            org=org,
            channel=Channel.SMS,
            to=number(i),
            content=content,
            source="bench",
            idempotency_key=f"bench-sms-{tag}-{i}",
        )
    wait_for_sms(server, before + n, timeout=60 + n * 0.1)
    return n / (time.monotonic() - started)


def sms_bulk_round(org: Any, server: Any, n: int, tag: str) -> float:
    from crm.models import Channel, Contact
    from crm.notify import Content, notify_many

    before = len(server.messages)
    started = time.monotonic()
    notify_many(
        org=org,
        channel=Channel.SMS,
        recipients=Contact.objects.filter(org=org).order_by("phone")[:n].iterator(),
        content=Content(text=SMS_TEXT),
        source="bench",
        key=f"bench-bulk-sms-{tag}",
    )
    wait_for_sms(server, before + n, timeout=60 + n * 0.1)
    return n / (time.monotonic() - started)


def sms_baseline_round(server: Any, status_callback: str, n: int) -> float:
    from twilio.rest import Client

    from crm.notify import contact_context, render

    before = len(server.messages)
    started = time.monotonic()
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = server.url  # the library's host for the API, here the local server
    for i in range(n):
        to = number(i)
        client.messages.create(
            to=to,
            from_=SENDER,
            body=render(SMS_TEXT, {"contact": contact_context(None, to)}),
            status_callback=status_callback,
        )
    wait_for_sms(server, before + n, timeout=60 + n * 0.1)
    return n / (time.monotonic() - started)


def interleaved(rounds: int, runs: dict[str, Callable[[str], float]]) -> dict[str, list[float]]:
    """Each round runs each, the order reversed every other round (ABC, CBA); rates per round."""
    rates: dict[str, list[float]] = {kind: [] for kind in runs}
    for rnd in range(rounds):
        order = list(runs) if rnd % 2 == 0 else list(reversed(runs))
        for kind in order:
            rates[kind].append(runs[kind](f"{rnd}-{uuid.uuid4().hex[:6]}"))
    return rates


def with_consent(org: Any, n: int) -> None:
    """Contacts for the first `n` numbers, each having consented to SMS (off the clock)."""
    from crm.models import Contact

    granted = {"sms": {"granted": True, "at": "2026-01-01T00:00:00+00:00", "how": "bench"}}
    Contact.objects.bulk_create(
        [Contact(org=org, phone=number(i), consent=granted) for i in range(min(n, 10000))], batch_size=1000
    )


def report(
    title: str, unit: str, baseline: str, subjects: dict[str, str], rates: dict[str, list[float]]
) -> dict[str, Any]:
    """Print one channel's table (the baseline, then each subject by its label); its figures."""
    base = _common.median(rates["baseline"])
    rows = [[baseline, f"{base:.1f}", f"{max(rates['baseline']):.1f}", "1.00x", "1.00x", ""]]
    figures: dict[str, Any] = {"rates": rates}
    for kind, label in subjects.items():
        rate = _common.median(rates[kind])
        ratio = _common.ratio(rate, base)
        paired = _common.median([s / b for s, b in zip(rates[kind], rates["baseline"], strict=True)])
        ok = "ok" if ratio >= TARGET_RATIO else "under"
        rows.append([label, f"{rate:.1f}", f"{max(rates[kind]):.1f}", f"{ratio:.2f}x", f"{paired:.2f}x", ok])
        figures[kind] = {"ratio": ratio, "paired": paired}
    _common.print_table(
        title,
        ["route", f"{unit}/s", "best", "ratio", "paired", "target"],
        rows,
        [f"{unit}/s = median over rounds"],
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emails", type=int, default=5000, help="Emails of each kind in all.")
    parser.add_argument("--sms", type=int, default=2000, help="SMS of each kind in all.")
    parser.add_argument(
        "--channels", default="email,sms", help="Which halves to run, comma-separated: email, sms."
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="How long the local Twilio API takes to answer each message (a real API takes 100+ ms).",
    )
    args = parser.parse_args()
    channels = {channel.strip() for channel in args.channels.split(",") if channel.strip()}
    if not channels or channels - {"email", "sms"}:
        parser.error("--channels takes email, sms or both")
    os.environ["OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    _common.setup_django()

    from core import services
    from crm.sms import status_callback
    from sync.upstream.connections import connection_create
    from tests.crm.smtp_server import smtp_server
    from tests.crm.twilio_server import TwilioServer
    from tests.live import Worker

    per_round = max(1, args.emails // args.rounds)
    sms_per_round = max(1, args.sms // args.rounds)
    database = _common.describe_database()
    rates: dict[str, list[float]] = {"subject": [], "baseline": []}
    sms_rates: dict[str, list[float]] = {"subject": [], "baseline": []}
    clock = _common.Stopwatch()
    with (
        smtp_server() as inbox,
        TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as twilio,
        bench_brokers("bench-notify-staging", "notification") as brokers,
    ):
        org, _ = services.org_create_with_owner(slug="bench-notify", owner_email="bench-notify@example.com")
        connection_create(
            org=org,
            vendor="smtp",
            name="bench",
            credentials={"host": "127.0.0.1", "port": inbox.port, "from_email": "hello@bench.example"},
        )
        sms_connection = connection_create(
            org=org,
            vendor="twilio",
            name="bench",
            credentials={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": SENDER},
            base_url=twilio.url,
        )
        with_consent(org, sms_per_round)
        twilio.latency = args.latency_ms / 1000
        callback = status_callback(sms_connection) or ""
        worker = Worker(
            brokers.worker,
            concurrency=args.concurrency,
            extra_env={"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING"},
        )
        try:
            worker.wait_ready()
            if "email" in channels:
                subject_round(org, inbox, min(100, per_round), "warmup")
                bulk_round(org, inbox, min(100, per_round), "warmup")
                rates = interleaved(
                    args.rounds,
                    {
                        "subject": lambda tag: subject_round(org, inbox, per_round, tag),
                        "bulk": lambda tag: bulk_round(org, inbox, per_round, tag),
                        "baseline": lambda tag: baseline_round(inbox.port, inbox, per_round, tag),
                    },
                )
            if "sms" in channels:
                sms_subject_round(org, twilio, min(100, sms_per_round), "warmup")
                sms_bulk_round(org, twilio, min(100, sms_per_round), "warmup")
                sms_rates = interleaved(
                    args.rounds,
                    {
                        "subject": lambda tag: sms_subject_round(org, twilio, sms_per_round, tag),
                        "bulk": lambda tag: sms_bulk_round(org, twilio, sms_per_round, tag),
                        "baseline": lambda tag: sms_baseline_round(twilio, callback, sms_per_round),
                    },
                )
        except BaseException:
            print(f"bench: worker log kept at {worker.log}", file=sys.stderr)
            raise
        finally:
            worker.stop()
        worker.log.unlink(missing_ok=True)

    setting = f"{database}; {brokers.description}; worker concurrency {args.concurrency}"
    results: dict[str, Any] = {"database": database, "broker": brokers.description, "rounds": args.rounds}
    if "email" in channels:
        results |= {"emails_per_round": per_round, "target_ratio": TARGET_RATIO}
        results |= report(
            f"Email notifications end to end - {setting}; {per_round} emails per round "
            f"(target: ratio >= {TARGET_RATIO})",
            "emails",
            BASELINE,
            {"subject": SUBJECT, "bulk": BULK},
            rates,
        )
    if "sms" in channels:
        results["sms"] = {
            "per_round": sms_per_round,
            "latency_ms": args.latency_ms,
            "target_ratio": TARGET_RATIO,
        } | report(
            f"SMS notifications end to end - {setting}; {sms_per_round} SMS per round, "
            f"Twilio answering in {args.latency_ms:g} ms "
            f"(target: ratio >= {TARGET_RATIO})",
            "SMS",
            SMS_BASELINE,
            {"subject": SMS_SUBJECT, "bulk": SMS_BULK},
            sms_rates,
        )
    print(f"took {clock.elapsed():.0f} s")
    path = _common.write_results("notify", results)
    print(f"results: {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
