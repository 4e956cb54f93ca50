"""Function calling in the engine: constrained calls from the random tiny model, the auto-mode switch
into the grammar on a scripted token sequence, and the continuation after a result against the
reference over the whole history."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from aural.runtime.engine.base import (
    FunctionSpec,
    GenerationDone,
    HistoryCall,
    Message,
    SamplingParams,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolUse,
)
from aural.runtime.engine.qwen2_audio.tool_format import tool_json
from aural.runtime.engine.reply import ReplyReader
from tests.support.reference import TOOLS_TEMPLATE, _hf_conversation, reference_generate

pytestmark = pytest.mark.model

BOOKING = FunctionSpec(
    "book",
    "Book a table.",
    {
        "type": "object",
        "properties": {
            "guest": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 6},
                    "vip": {"type": "boolean"},
                },
                "required": ["name", "vip"],
                "additionalProperties": False,
            },
            "seats": {"type": "integer", "minimum": 1, "maximum": 12},
            "budget": {"type": "number", "minimum": -5.5, "maximum": 99.5},
            "diet": {"enum": ["none", "vegan", "halal"]},
            "dishes": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
        },
        "required": ["guest", "seats", "budget", "diet", "dishes"],
        "additionalProperties": False,
    },
)
NOTE = FunctionSpec(
    "note",
    None,
    {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 8}},
        "required": ["text"],
        "additionalProperties": False,
    },
)
TOOLS = (BOOKING, NOTE)
ASK = [Message("user", ('Book for "Zoë" \\ 4 people, please.',), key="u0")]


async def _events(session, conversation, key, params):
    return [event async for event in session.generate(conversation, key, params)]


def _check_call(events, schemas, name):
    calls = [event for event in events if isinstance(event, ToolCallDone)]
    assert len(calls) == 1 and not any(isinstance(event, TextDelta) for event in events)
    (call,) = calls
    assert call.name == name or (name is None and call.name in schemas)
    streamed = "".join(e.arguments for e in events if isinstance(e, ToolCallDelta))
    assert streamed == call.arguments
    jsonschema.validate(json.loads(call.arguments), schemas[call.name])
    return call


def _use(seed: int) -> ToolUse:
    """Odd seeds: a named choice; even seeds: `required` among both tools."""
    return ToolUse(TOOLS, "required", function="book" if seed % 2 else None, parallel=False)


def test_constrained_calls_parse_and_validate_for_100_seeds(engine):
    """The grammar path alone, sampling at temperature 1.0 from random logits over the tiny model's
    vocabulary (a random model's logits are as good as noise; the live model runs below)."""
    schemas = {spec.name: spec.parameters for spec in TOOLS}
    escaped = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        reader = ReplyReader(engine.token_text, _use(seed), engine.chat_format.tool_format, engine.grammars)
        events = []
        for _ in range(400):
            logits = rng.standard_normal(engine.grammars.vocab_size)
            logits[~reader.allowed()] = -np.inf
            probs = np.exp(logits - logits.max())
            token = int(rng.choice(probs.size, p=probs / probs.sum()))
            if token in engine.stop_ids:
                break
            events += reader.push(token)
        else:
            pytest.fail(f"seed {seed}: no stop within 400 tokens")
        tail, _ = reader.finish()
        assert tail == []
        call = _check_call(events, schemas, "book" if seed % 2 else None)
        escaped += "\\" in call.arguments
    assert escaped, "some strings needed escaping"


async def test_the_tiny_model_makes_valid_calls(engine):
    """The live path: the random tiny model, temperature 1.0, named and `required` choices, 100 seeds."""
    session = await engine.open_session()
    schemas = {spec.name: spec.parameters for spec in TOOLS}
    for seed in range(100):
        params = SamplingParams(max_tokens=400, temperature=1.0, seed=seed, tools=_use(seed))
        events = await _events(session, ASK, f"r{seed}", params)
        assert isinstance(events[-1], GenerationDone) and events[-1].reason == "stop", (seed, events[-1])
        _check_call(events[:-1], schemas, "book" if seed % 2 else None)
    await session.close()


async def test_forced_tokens_are_fed_in_one_pass(engine, monkeypatch):
    """What the grammar forces (the wrapper, the keys, the closing text) is not sampled token by token: a
    named call takes far fewer model passes than it has tokens, and still validates."""
    passes: list[tuple[int, int]] = []  # (first position, positions) of every pass over the session's cache
    scheduler = engine.scheduler
    step = scheduler.step

    def counting_step(tokens, caches, chunks=()):
        passes.extend((cache.length, 1) for cache in caches)
        passes.extend((chunk.start, len(chunk.embeds)) for chunk in chunks)
        return step(tokens, caches, chunks)

    monkeypatch.setattr(scheduler, "step", counting_step)
    session = await engine.open_session()
    params = SamplingParams(max_tokens=400, temperature=1.0, seed=3, tools=_use(1))
    events = await _events(session, ASK, "forced", params)
    _check_call(events[:-1], {spec.name: spec.parameters for spec in TOOLS}, "book")
    usage = events[-1].usage
    feeds = [width for start, width in passes if start >= usage.input_tokens]  # after the prompt's prefill
    assert sum(feeds) == usage.output_tokens, "each token is fed once (the stop is sampled after the last)"
    assert max(feeds) > 10 and len(feeds) < usage.output_tokens / 2
    await session.close()


def _script(engine, text: str) -> list[int]:
    return engine.tokenizer.encode(text, add_special_tokens=False)


def test_auto_mode_switches_into_the_grammar_after_the_opener(engine):
    """A scripted reply: text, then a call. The text streams without the opener's start; from the
    opener on, the grammar constrains every token and the call comes out as call events."""
    use = ToolUse(TOOLS, "auto")
    reader = ReplyReader(engine.token_text, use, engine.chat_format.tool_format, engine.grammars)
    before = "Let me see <tool.\n"
    call = HistoryCall("note", json.dumps({"text": 'a"b'}))
    script = _script(engine, before + "\n" + engine.chat_format.tool_format.call_text(call))
    events, masks = [], []
    for token in script:
        masks.append(reader.allowed())
        events += reader.push(token)
    assert reader.allowed() is not None and not reader.allowed()[script[0]]
    tail, keep = reader.finish()
    assert tail == [] and keep == len(script)
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert text == before
    opener_end = len(_script(engine, before + "\n<tool_call>"))
    assert all(mask is None for mask in masks[:opener_end])
    constrained = zip(masks[opener_end:], script[opener_end:], strict=True)
    assert all(mask is not None and mask[token] for mask, token in constrained)
    assert [e for e in events if isinstance(e, ToolCallDone)] == [ToolCallDone(0, "note", call.arguments)]


def test_a_call_cut_off_is_dropped_from_the_reply(engine):
    use = ToolUse(TOOLS, "auto")
    reader = ReplyReader(engine.token_text, use, engine.chat_format.tool_format, engine.grammars)
    script = _script(engine, 'Sure.\n<tool_call>\n{"name": "note", "arguments": {"te')
    events = [event for token in script for event in reader.push(token)]
    tail, keep = reader.finish()
    assert keep == len(_script(engine, "Sure."))
    assert not any(isinstance(event, ToolCallDone) for event in events + tail)
    deltas = [event for event in events if isinstance(event, ToolCallDelta)]
    assert {d.name for d in deltas} == {"note"} and "".join(d.arguments for d in deltas) == '{"te'


async def test_the_continuation_after_a_result_equals_the_reference(engine):
    """Call, result, answer: the answer's tokens equal transformers' `generate()` over the whole history
    rendered by the reference template; only the result is prefilled."""
    session = await engine.open_session()
    conversation = [Message("system", ("Be brief.",), key="sys"), *ASK]
    use = ToolUse(TOOLS, "required", function="note", parallel=False)
    params = SamplingParams(max_tokens=200, temperature=1.0, seed=3, tools=use)
    events = await _events(session, conversation, "r0", params)
    (call,) = [event for event in events if isinstance(event, ToolCallDone)]
    conversation += [
        Message("assistant", (), key="r0", tool_calls=(HistoryCall(call.name, call.arguments),)),
        Message("tool", ('{"ok": true}',), key="out0"),
    ]
    events = await _events(session, conversation, "r1", SamplingParams(max_tokens=12, tools=ToolUse(TOOLS)))
    done = events[-1]
    assert isinstance(done, GenerationDone)
    expected = reference_generate(engine, conversation, {"r0": session.generated["r0"]}, 12, TOOLS)
    assert session.generated["r1"] == expected
    encode = engine.chat_format.encode
    # the call's turn end, the result's user turn, the generation prompt: nothing else is prefilled
    text = "\n" + 'user\n<tool_response>\n{"ok": true}\n</tool_response>' + "\n" + "assistant\n"
    special = 4  # <|im_end|>, <|im_start|>, <|im_end|>, <|im_start|>
    assert done.usage.input_tokens - done.usage.cached_tokens == len(encode(text)) + special
    await session.close()


def test_the_renderer_equals_the_reference_template_for_calls_made_elsewhere(engine):
    """A history whose calls the client made (rendered from text, not from generated ids)."""
    conversation = [
        *ASK,
        Message("assistant", ("On it.",), tool_calls=(HistoryCall("note", '{"text":"x"}'), HistoryCall("note", "{}"))),
        Message("tool", ("one",), key="o1"),
        Message("tool", ("two",), key="o2"),
    ]
    ours = engine.chat_format.render(conversation, lambda key: None, TOOLS).ids
    history, _, _ = _hf_conversation(conversation, {})
    text = engine.processor.apply_chat_template(
        history,
        tools=[tool_json(spec) for spec in TOOLS],
        chat_template=TOOLS_TEMPLATE,
        add_generation_prompt=True,
        tokenize=False,
    )
    assert ours == engine.tokenizer.encode(text, add_special_tokens=False)
