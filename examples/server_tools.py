"""Server-side tools: plain Python functions that the runtime runs itself, with no client round trip.

aural serve --tools examples.server_tools:TOOLS      # run from the repository's root
python examples/voice_chat.py examples/sample.wav    # any client: it sees the calls and their outputs

The model is told about these tools on every response; when it calls one, the runtime runs it, adds the
output to the conversation (the client sees a `function_call_output` item) and continues the response.
A function's schema comes from its type hints and docstring; bounds such as `max_length` help a model
finish its arguments. An exception becomes an error output that the model reads, like a timeout.
"""

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
    # A plain function runs in a thread. An unknown zone raises: the model reads the error and can retry.
    return datetime.datetime.now(zoneinfo.ZoneInfo(timezone)).strftime("%H:%M")


async def lookup_order(order_id: Annotated[int, Field(ge=1, le=99999)]) -> dict[str, Any]:
    """An order's status and size.

    Args:
        order_id: the order's number.
    """
    await asyncio.sleep(0)  # a real tool would ask a database here, without blocking the loop
    order = ORDERS.get(order_id)
    if order is None:
        raise KeyError(f"no order {order_id}")
    return {"order_id": order_id, **order}


TOOLS = [get_time, lookup_order]
