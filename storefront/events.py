"""Domain events the storefront emits. Money is integer minor units plus an ISO 4217 currency."""

from typing import Literal

from pydantic import BaseModel, Field

from core.events import declare


class OrderPlaced(BaseModel):
    order_id: str
    cart_id: str | None = None
    contact_id: str | None = None
    total: int = Field(description="Order total in minor units (cents).")
    currency: str = Field(min_length=3, max_length=3)


class PaymentOutcome(BaseModel):
    payment_id: str
    order_id: str | None = None
    amount: int = Field(description="Amount in minor units (cents).")
    currency: str = Field(min_length=3, max_length=3)
    provider: Literal["stripe", "paypal"]
    provider_reference: str = Field(description="The vendor's id for the charge or capture.")


class PaymentFailed(PaymentOutcome):
    failure_code: str = ""
    failure_message: str = ""


ORDER_PLACED = declare(
    "order.placed",
    app="storefront",
    payload=OrderPlaced,
    description="A cart converts to an order.",
)
PAYMENT_SUCCEEDED = declare(
    "payment.succeeded",
    app="storefront",
    payload=PaymentOutcome,
    description="A Stripe or PayPal webhook reports a successful payment.",
)
PAYMENT_FAILED = declare(
    "payment.failed",
    app="storefront",
    payload=PaymentFailed,
    description="A Stripe or PayPal webhook reports a failed payment.",
)
