"""Function calling with the Aural SDK: the model calls Python functions; the SDK runs them and carries on.

aural serve &                      # the built-in tiny model (random weights: it will hardly call anything)
python examples/tools.py "What time is it in Lisbon, and is it warm there?"
python examples/tools.py "Answer the question in the recording." --audio examples/sample.wav
python examples/tools.py "Is it warm in Lisbon?" --call get_weather   # force a call to one tool
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import zoneinfo
from typing import Annotated, Literal

from pydantic import Field

import aural.sdk
from aural.sdk import ToolChoiceFunction, Tools, tool


# Bounds such as `max_length` go into the JSON Schema the model is held to: they let it finish a call.
@tool
async def get_weather(city: Annotated[str, Field(max_length=40)], unit: Literal["c", "f"] = "c") -> dict[str, object]:
    """The current weather in a city.

    Args:
        city: the city's name, in English.
        unit: degrees Celsius ("c") or Fahrenheit ("f").
    """
    celsius = 21.0  # a real tool would ask a weather service here, without blocking the loop
    return {"city": city, "temperature": celsius if unit == "c" else celsius * 9 / 5 + 32, "unit": unit}


@tool
def local_time(timezone: Annotated[str, Field(max_length=40)]) -> str:
    """The local time now, as HH:MM.

    Args:
        timezone: an IANA time zone, such as "Europe/Lisbon".
    """
    # A plain function runs in a thread. An unknown zone raises: the model reads the error and can retry.
    return datetime.datetime.now(zoneinfo.ZoneInfo(timezone)).strftime("%H:%M")


async def ask(url: str, question: str, audio: str | None, force: str | None) -> None:
    tools = Tools([get_weather, local_time], timeout=10.0)
    async with aural.sdk.connect(url, tools=tools) as conn:  # the tools' definitions are sent for you
        await conn.add_message("user", text=question, audio=audio)
        # A named `tool_choice` makes the model call that tool; the continuation is left to the session's choice.
        choice = ToolChoiceFunction(name=force) if force else None  # None: the session's choice
        reply = conn.create_response(max_output_tokens=256, tool_choice=choice)
        async for delta in reply:  # the text of every round: before the calls, and after their outputs
            print(delta, end="", flush=True)
        print()
        for call in reply.tool_calls:
            print(f"  called {call.name}({call.arguments}) -> {call.output}")
        for item in reply.function_calls:  # only when the model kept calling past `max_rounds`
            print(f"  left unanswered: {item.name}({item.arguments})")
        print(f"[{reply.response.status if reply.response else 'no response'}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", help="what the user asks")
    parser.add_argument("--audio", help="an audio file sent with the question")
    parser.add_argument("--call", choices=["get_weather", "local_time"], help="make the model call this tool")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    args = parser.parse_args()
    asyncio.run(ask(args.url, args.question, args.audio, args.call))


if __name__ == "__main__":
    main()
