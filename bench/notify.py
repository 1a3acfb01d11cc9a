"""Email notifications end to end: notify() -> the notification job on a worker -> a local SMTP
server, vs a bare loop sending the same messages through Django's SMTP backend on one connection.

Subject: `crm.notify.notify(...)` per email (a Delivery row, its collection-create event and its
job in one commit; the templates rendered, the html's link tracked), published after commit and
sent by a real Celery worker (tests.live.Worker, concurrency 2) through the org's smtp
connection: claim, SMTP conversation, settle. Baseline: the same subject, text and html sent
from this process by Django's `EmailBackend`, one connection kept open for the whole round.
Both go to one aiosmtpd server in this process; a round's time runs from its first send to the
server holding all of its messages. Rounds alternate the order (ABBA); the figure is the median
emails/s. Target: ratio >= 0.7.

    .venv/bin/python bench/notify.py [--emails 5000] [--rounds 4] [--concurrency 2]
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
from typing import Any  # noqa: E402

from bench import _common  # noqa: E402
from bench._brokers import bench_brokers  # noqa: E402

TARGET_RATIO = 0.7
SUBJECT = "notify() -> worker -> SMTP"
BASELINE = "bare EmailBackend loop, one connection"
TEXT = "Hello {{ contact.first_name }},\n\nour sale starts today."
HTML = (
    "<p>Hello {{ contact.first_name }},</p>"
    '<p><a href="https://shop.example/sale">Our sale</a> starts today.</p>'
)


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emails", type=int, default=5000, help="Emails of each kind in all.")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    os.environ["OUTBOUND_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    _common.setup_django()

    from core import services
    from sync.upstream.connections import connection_create
    from tests.crm.smtp_server import smtp_server
    from tests.live import Worker

    per_round = max(1, args.emails // args.rounds)
    database = _common.describe_database()
    rates: dict[str, list[float]] = {"subject": [], "baseline": []}
    clock = _common.Stopwatch()
    with smtp_server() as inbox, bench_brokers("bench-notify-staging", "notification") as brokers:
        org, _ = services.org_create_with_owner(slug="bench-notify", owner_email="bench-notify@example.com")
        connection_create(
            org=org,
            vendor="smtp",
            name="bench",
            credentials={"host": "127.0.0.1", "port": inbox.port, "from_email": "hello@bench.example"},
        )
        worker = Worker(
            brokers.worker,
            concurrency=args.concurrency,
            extra_env={"OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING"},
        )
        try:
            worker.wait_ready()
            subject_round(org, inbox, min(100, per_round), "warmup")
            for rnd in range(args.rounds):
                order = ("subject", "baseline") if rnd % 2 == 0 else ("baseline", "subject")
                for kind in order:
                    tag = f"{rnd}-{uuid.uuid4().hex[:6]}"
                    if kind == "subject":
                        rates[kind].append(subject_round(org, inbox, per_round, tag))
                    else:
                        rates[kind].append(baseline_round(inbox.port, inbox, per_round, tag))
        except BaseException:
            print(f"bench: worker log kept at {worker.log}", file=sys.stderr)
            raise
        finally:
            worker.stop()
        worker.log.unlink(missing_ok=True)

    subject, baseline = _common.median(rates["subject"]), _common.median(rates["baseline"])
    ratio = _common.ratio(subject, baseline)
    paired = _common.median([s / b for s, b in zip(rates["subject"], rates["baseline"], strict=True)])
    _common.print_table(
        f"Email notifications end to end - {database}; {brokers.description}; worker concurrency "
        f"{args.concurrency}; {per_round} emails per round (target: ratio >= {TARGET_RATIO})",
        ["route", "emails/s", "best", "ratio", "paired", "target"],
        [
            [BASELINE, f"{baseline:.1f}", f"{max(rates['baseline']):.1f}", "1.00x", "1.00x", ""],
            [
                SUBJECT,
                f"{subject:.1f}",
                f"{max(rates['subject']):.1f}",
                f"{ratio:.2f}x",
                f"{paired:.2f}x",
                "ok" if ratio >= TARGET_RATIO else "under",
            ],
        ],
        [f"emails/s = median over rounds; took {clock.elapsed():.0f} s"],
    )
    path = _common.write_results(
        "notify",
        {
            "database": database,
            "broker": brokers.description,
            "emails_per_round": per_round,
            "rounds": args.rounds,
            "rates": rates,
            "ratio": ratio,
            "paired": paired,
            "target_ratio": TARGET_RATIO,
        },
    )
    print(f"results: {path.relative_to(_common.ROOT)}")


if __name__ == "__main__":
    main()
