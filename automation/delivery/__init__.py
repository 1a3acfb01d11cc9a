"""The send-webhook delivery: its configuration (`config`), signing, one attempt (`send`,
`attempt`) and when to try again (`retry`); see docs/automation.md#send-webhook-delivery."""

from automation.delivery.attempt import DELIVERED, FAILED, GONE, RETRY, Attempt
from automation.delivery.config import RESERVED_HEADERS, check_headers, check_secret, generate_secret
from automation.delivery.retry import RETRY_AFTER_CAP, next_delay, parse_retry_after, retry_schedule
from automation.delivery.send import BODY_LIMIT, PURPOSE, deliver
from automation.delivery.signing import USER_AGENT, sign

__all__ = [
    "BODY_LIMIT",
    "DELIVERED",
    "FAILED",
    "GONE",
    "PURPOSE",
    "RESERVED_HEADERS",
    "RETRY",
    "RETRY_AFTER_CAP",
    "USER_AGENT",
    "Attempt",
    "check_headers",
    "check_secret",
    "deliver",
    "generate_secret",
    "next_delay",
    "parse_retry_after",
    "retry_schedule",
    "sign",
]
