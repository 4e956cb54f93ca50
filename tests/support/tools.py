"""Server-side tools for tests, importable as a `--tools` spec (`tests.support.tools:TOOLS`): a plain function
(run in a thread) and a coroutine function, with bounds in their schemas, and failures of their own."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

ORDERS = {1001: {"status": "shipped", "items": 2}, 1002: {"status": "processing", "items": 1}}


def get_time(timezone: Annotated[str, Field(max_length=40)] = "UTC") -> str:
    """The local time now, as HH:MM (a fixed clock: tests need no real one).

    Args:
        timezone: an IANA time zone.
    """
    return "12:00"


async def lookup_order(order_id: Annotated[int, Field(ge=1, le=99999)]) -> dict[str, Any]:
    """An order's status and size; an unknown order raises.

    Args:
        order_id: the order's number.
    """
    return {"order_id": order_id, **ORDERS[order_id]}


TOOLS = [get_time, lookup_order]
