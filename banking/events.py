"""Domain events banking emits along the ACH/RTP transfer lifecycle."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.events import declare


class TransferInitiated(BaseModel):
    transfer_id: str
    account_id: str
    rail: Literal["ach", "rtp"]
    direction: Literal["credit", "debit"]
    amount: int = Field(description="Amount in minor units (cents).")
    currency: str = Field(min_length=3, max_length=3)


class TransferSettled(BaseModel):
    transfer_id: str
    account_id: str
    amount: int = Field(description="Amount in minor units (cents).")
    currency: str = Field(min_length=3, max_length=3)
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
