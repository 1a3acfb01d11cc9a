"""Domain events the storefront emits. Money is integer minor units plus an ISO 4217 currency."""

from datetime import datetime
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
    vendor_created_at: datetime | None = Field(
        default=None,
        description="When the vendor says the event happened: vendor events arrive out of order, "
        "so consumers order a payment's events by this time, not by arrival.",
    )


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


class CheckoutCompleted(BaseModel):
    session_id: str = Field(description="The vendor's checkout session id.")
    order_id: str | None = Field(
        default=None, description="Our order id: the session's metadata order_id or client_reference_id."
    )
    client_reference_id: str | None = None
    payment_id: str | None = Field(default=None, description="The payment (intent) the session created.")
    amount_total: int = Field(default=0, description="Session total in minor units (cents).")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    customer_email: str | None = None
    payment_status: str = Field(default="", description="The vendor's: paid, unpaid, no_payment_required.")
    provider: Literal["stripe"]
    vendor_created_at: datetime | None = None


class PaymentRefunded(BaseModel):
    payment_id: str
    order_id: str | None = None
    amount_refunded: int = Field(
        description="Total refunded on the payment so far, in minor units: the latest event by "
        "vendor time carries the final figure whatever order events arrive in."
    )
    currency: str = Field(min_length=3, max_length=3)
    provider: Literal["stripe", "paypal"]
    provider_reference: str = Field(description="The vendor's id for the refunded charge or capture.")
    refund_id: str | None = Field(default=None, description="The vendor's id for this refund, when it says.")
    refund_amount: int | None = Field(
        default=None, description="This refund's amount in minor units, when the vendor says (PayPal)."
    )
    vendor_created_at: datetime | None = None


CHECKOUT_COMPLETED = declare(
    "checkout.completed",
    app="storefront",
    payload=CheckoutCompleted,
    description="A customer completes a Stripe Checkout session.",
)
PAYMENT_REFUNDED = declare(
    "payment.refunded",
    app="storefront",
    payload=PaymentRefunded,
    description="A Stripe or PayPal webhook reports a (partial or full) refund.",
)
