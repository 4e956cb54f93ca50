"""Function-calling benchmark on a built-in preset (float32 on the CPU), in process.

- Per-token cost of constrained decoding: each repeat runs one reply constrained by a named
  `tool_choice` and one free reply of the same length, in alternation, from the same cached prompt
  (the tools are in the prompt of both). The decode interval of a reply is (its end - its request) /
  tokens; the figure is the median constrained interval over the median free one. The
  grammar's own share is also timed alone: mask fill + unpack, per token, over the same calls.
- Call to continuation: from the event that carries the call's last argument text to the first text
  of the answer, when the result is sent back as soon as the call's reply ends. It includes the
  tokens the grammar forces after the arguments (the call's closing text) and the result's prefill.

    python bench/tools.py [--preset medium] [--repeats 5] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from aural.runtime.engine.base import (
    FunctionSpec,
    GenerationDone,
    GenerationEvent,
    HistoryCall,
    Message,
    SamplingParams,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolUse,
)
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine, TransformersSession
from aural.runtime.engine.reply import ReplyReader

WEATHER = FunctionSpec(
    "weather",
    "The forecast for a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 14}, "maxItems": 3},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days", "unit"],
        "additionalProperties": False,
    },
)
ASK = Message("user", ("What will the weather be in Oslo this week?",), key="u0")


async def timed(
    session: TransformersSession, conversation: list[Message], key: str, params: SamplingParams
) -> list[tuple[float, GenerationEvent]]:
    """The reply's events with their arrival times, after a first entry for the moment it was asked for."""
    start = time.perf_counter()
    events = [(time.perf_counter(), event) async for event in session.generate(conversation, key, params)]
    return [(start, GenerationDone("stop")), *events]


def interval(events: list[tuple[float, GenerationEvent]]) -> tuple[float, int]:
    """Seconds per token, from the request to the end (the prompt is cached: its prefill is a few tokens).
    Not from the first event: a call's first event waits for its name, text for whole characters."""
    done = events[-1][1]
    assert isinstance(done, GenerationDone)
    tokens = done.usage.output_tokens
    return (events[-1][0] - events[0][0]) / max(tokens, 1), tokens


async def run(preset: str, repeats: int) -> dict[str, Any]:
    engine = TransformersEngine.load(preset, device="cpu", dtype="float32")
    session = await engine.open_session()
    forced, free, masks, handoffs, call_tokens = [], [], [], [], []
    for repeat in range(repeats):
        use = ToolUse((WEATHER,), "required", function="weather", parallel=False)
        params = SamplingParams(max_tokens=400, temperature=1.0, seed=repeat, tools=use)
        call_events = await timed(session, [ASK], f"call{repeat}", params)
        step, tokens = interval(call_events)
        forced.append(step)
        call_tokens.append(tokens)

        # answer at once: the result goes back the moment the call's reply ends
        last_args = max(at for at, event in call_events if isinstance(event, ToolCallDelta))
        (call,) = [event for _, event in call_events if isinstance(event, ToolCallDone)]
        conversation = [
            ASK,
            Message("assistant", (), key=f"call{repeat}", tool_calls=(HistoryCall(call.name, call.arguments),)),
            Message("tool", ('{"forecast": "sunny", "high": 21}',), key=f"out{repeat}"),
        ]
        answer_params = SamplingParams(max_tokens=4, tools=ToolUse((WEATHER,)))
        answer = await timed(session, conversation, f"answer{repeat}", answer_params)
        first_text = next(at for at, event in answer if isinstance(event, TextDelta))
        handoffs.append(first_text - last_args)

        # a free reply of the same length, the same tools in the prompt
        free_params = SamplingParams(max_tokens=tokens, temperature=1.0, seed=repeat, tools=ToolUse((WEATHER,), "none"))
        free.append(interval(await timed(session, [ASK], f"free{repeat}", free_params))[0])

        # the grammar alone over the same call's tokens
        reader = ReplyReader(engine.token_text, use, engine.chat_format.tool_format, engine.grammars)
        start = time.perf_counter()
        for token in session.generated[f"call{repeat}"]:
            reader.allowed()
            reader.push(token)
        masks.append((time.perf_counter() - start) / len(session.generated[f"call{repeat}"]))
    await session.close()
    await engine.close()
    median_forced, median_free = statistics.median(forced), statistics.median(free)
    return {
        "preset": preset,
        "repeats": repeats,
        "call_tokens": call_tokens,
        "decode_ms_constrained": round(1000 * median_forced, 2),
        "decode_ms_free": round(1000 * median_free, 2),
        "constrained_overhead": round(median_forced / median_free - 1, 4),
        "mask_ms_per_token": round(1000 * statistics.median(masks), 3),
        "mask_share_of_free_step": round(statistics.median(masks) / median_free, 4),
        "last_argument_to_answer_ms": round(1000 * statistics.median(handoffs), 1),
        "last_argument_to_answer_ms_all": [round(1000 * h, 1) for h in handoffs],
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": torch.get_num_threads()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    report = asyncio.run(run(args.preset, args.repeats))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tools.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
