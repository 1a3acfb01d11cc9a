"""Domain events banking emits along the ACH/RTP transfer lifecycle."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.events import declare


class TransferPayload(BaseModel):
    """What every transfer event carries: the transfer, its account and its amount."""

    transfer_id: str
    account_id: str
    amount: int = Field(description="Amount in minor units (cents).")
    currency: str = Field(min_length=3, max_length=3)


class RailTransferPayload(TransferPayload):
    """A transfer event that also names its rail and direction."""

    rail: Literal["ach", "rtp"]
    direction: Literal["credit", "debit"]


class TransferInitiated(RailTransferPayload):
    # Optional, so emitters that know no provider time stay valid; the provider webhook sets it,
    # which is what orders an `initiated` that arrives after its `settled` (see banking/webhooks.py).
    initiated_at: datetime | None = Field(None, description="When the provider recorded the initiation.")


class TransferSettled(TransferPayload):
    settled_at: datetime


TRANSFER_INITIATED = declare(
    "transfer.initiated",
    app="banking",
    payload=TransferInitiated,
    description="An ACH or RTP transfer is initiated.",
)
TRANSFER_SETTLED = declare(
    "transfer.settled",
    app="banking",
    payload=TransferSettled,
    description="An ACH or RTP transfer settles.",
)


class TransferReturned(RailTransferPayload):
    return_code: str = Field(pattern=r"^R\d{2}$", description="The NACHA return reason code, e.g. R01.")
    return_reason: str = Field("", description="The return code's description, e.g. Insufficient Funds.")
    returned_at: datetime


class TransferFailed(RailTransferPayload):
    failure_code: str = Field("", description="The provider's or network's code, e.g. an RTP reject reason.")
    failure_reason: str = ""
    failed_at: datetime


TRANSFER_RETURNED = declare(
    "transfer.returned",
    app="banking",
    payload=TransferReturned,
    description="A settled ACH transfer is returned by the receiving bank (with its R code).",
)
TRANSFER_FAILED = declare(
    "transfer.failed",
    app="banking",
    payload=TransferFailed,
    description="An ACH or RTP transfer is rejected or fails before it settles.",
)
