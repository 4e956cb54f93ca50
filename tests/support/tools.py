"""Server-side tools for tests, importable as `--tools` specs (`tests.support.tools:TOOLS`): one plain function
(run in a thread) and one coroutine function, the shapes `examples/server_tools.py` shows a user."""

from __future__ import annotations

import asyncio
import datetime
import zoneinfo
from typing import Annotated, Any

from pydantic import Field

ORDERS = {1001: {"status": "shipped", "items": 2}, 1002: {"status": "processing", "items": 1}}


def get_time(timezone: Annotated[str, Field(max_length=40)] = "UTC") -> str:
    """The local time now, as HH:MM.

    Args:
        timezone: an IANA time zone, such as "Europe/Lisbon".
    """
    return datetime.datetime.now(zoneinfo.ZoneInfo(timezone)).strftime("%H:%M")


async def lookup_order(order_id: Annotated[int, Field(ge=1, le=99999)]) -> dict[str, Any]:
    """An order's status and size.

    Args:
        order_id: the order's number.
    """
    await asyncio.sleep(0)
    order = ORDERS.get(order_id)
    if order is None:
        raise KeyError(f"no order {order_id}")
    return {"order_id": order_id, **order}


TOOLS = [get_time, lookup_order]
