"""The agent's tool over collection records (core's generic records): search them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from automation.tools import ToolCaller, ToolError, tool
from core import search
from core.models import Record


class SearchRecords(BaseModel):
    datatype: str = Field(min_length=1, max_length=100, description="The collection, such as `product`.")
    query: str = Field(default="", max_length=200, description="Words to find in the records' data.")
    limit: int = Field(default=10, ge=1, le=25)


@tool("collections_search_records", "Search the organization's collection records of one datatype.")
def search_records(caller: ToolCaller, args: SearchRecords) -> list[dict[str, Any]]:
    records = Record.objects.filter(org=caller.org, datatype=args.datatype)
    if args.query.strip():
        try:
            records = search.matching(records, args.query.strip())
        except search.InvalidSearch as exc:
            raise ToolError(str(exc)) from None
    return [
        {
            "id": str(record.pk),
            "status": record.status,
            "data": record.data,
            "created_at": record.created_at.isoformat(),
        }
        for record in records.order_by("-created_at", "-id")[: args.limit]
    ]
