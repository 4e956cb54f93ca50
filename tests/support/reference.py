"""The naive reference: Qwen2-Audio's README way of serving a conversation.

Every turn, the whole history goes through the processor's own chat template and the processor
(log-mel features of every clip, padded to 30 s), and transformers' `generate()` starts from an empty
cache. Nothing is kept between turns, so each turn costs more than the one before. The runtime never
does this; it is kept as the reference that the fidelity tests compare the persistent sessions
against, and as the baseline of the benchmarks.

Assistant turns that a session generated are spliced in as the token ids the model produced (as the
chat format does): decoded text does not round-trip through a byte-level tokenizer. They are rendered
as unique placeholder strings, then the placeholders' ids are replaced by the reply's.

With tools, the template is Qwen2-Audio's own extended with Qwen2.5's tool parts, written here in
Jinja independently of the runtime's renderer (`TOOLS_TEMPLATE`), so that the fidelity tests check one
against the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from aural.runtime.engine.base import SAMPLE_RATE, AudioPart, AudioSamples, FunctionSpec, Message
from aural.runtime.engine.qwen2_audio.chat_format import split_clips
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.engine.qwen2_audio.tool_format import tool_json

_NL = "{{ '\\n' }}"
TOOLS_TEMPLATE = "".join(
    [
        "{%- set audio_count = namespace(value=0) -%}",
        "{%- if tools -%}<|im_start|>system" + _NL,
        "{%- if messages[0]['role'] == 'system' -%}{{ messages[0]['content'] }}",
        "{%- else -%}You are a helpful assistant.{%- endif -%}",
        _NL + _NL + "# Tools" + _NL + _NL + "You may call one or more functions to assist with the user query.",
        _NL + _NL + "You are provided with function signatures within <tools></tools> XML tags:" + _NL + "<tools>",
        "{%- for tool in tools -%}" + _NL + "{{ tool | tojson }}{%- endfor -%}",
        _NL + "</tools>" + _NL + _NL + "For each function call, return a json object with function name and ",
        "arguments within <tool_call></tool_call> XML tags:" + _NL + "<tool_call>" + _NL,
        '{"name": <function-name>, "arguments": <args-json-object>}' + _NL + "</tool_call><|im_end|>" + _NL,
        "{%- elif messages[0]['role'] != 'system' -%}<|im_start|>system" + _NL,
        "You are a helpful assistant.<|im_end|>" + _NL + "{%- endif -%}",
        "{%- for message in messages -%}",
        "{%- if loop.first and message['role'] == 'system' and tools -%}",
        "{%- elif message['role'] == 'tool' -%}",
        "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}<|im_start|>user{%- endif -%}",
        _NL + "<tool_response>" + _NL + "{{ message['content'] }}" + _NL + "</tool_response>",
        "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}<|im_end|>" + _NL + "{%- endif -%}",
        "{%- elif message['role'] == 'assistant' and message['tool_calls'] -%}<|im_start|>assistant",
        "{%- if message['content'] -%}" + _NL + "{{ message['content'] }}{%- endif -%}",
        "{%- for call in message['tool_calls'] -%}" + _NL + "<tool_call>" + _NL,
        '{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}',
        _NL + "</tool_call>{%- endfor -%}<|im_end|>" + _NL,
        "{%- else -%}<|im_start|>{{ message['role'] }}" + _NL,
        "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}",
        "{%- for content in message['content'] -%}{%- if content['type'] == 'audio' -%}",
        "{%- set audio_count.value = audio_count.value + 1 -%}",
        "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>" + _NL,
        "{%- else -%}{{ content['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}<|im_end|>" + _NL,
        "{%- endif -%}{%- endfor -%}",
        "{%- if add_generation_prompt -%}<|im_start|>assistant" + _NL + "{%- endif -%}",
    ]
)
"""Qwen2-Audio's chat template with Qwen2.5's tool section, tool calls and `tool` turns."""

_PLACEHOLDER = "\x01REPLY{}\x01"  # a control character no real message holds


def _hf_conversation(
    conversation: Sequence[Message], generated: Mapping[str, Sequence[int]]
) -> tuple[list[dict[str, Any]], list[Sequence[int]], list[AudioSamples]]:
    """The conversation as transformers' chat dicts, the spliced replies in order, and the clips."""
    history: list[dict[str, Any]] = []
    replies: list[Sequence[int]] = []
    clips: list[AudioSamples] = []
    for message in conversation:
        if message.role == "assistant" and message.key and message.key in generated:
            history.append({"role": "assistant", "content": _PLACEHOLDER.format(len(replies))})
            replies.append(generated[message.key])
        elif message.role == "assistant" and message.tool_calls:
            calls = [{"type": "function", "function": {"name": c.name, "arguments": json.loads(c.arguments)}}
                     for c in message.tool_calls]  # fmt: skip
            text = "".join(part for part in message.parts if not isinstance(part, AudioPart))
            history.append({"role": "assistant", "content": text, "tool_calls": calls})
        elif message.role == "user":
            content: list[dict[str, str]] = []
            for part in message.parts:
                if isinstance(part, str):
                    content.append({"type": "text", "text": part})
                    continue
                for clip in split_clips(part):  # the processor would cut a clip at 30 s
                    content.append({"type": "audio", "audio_url": clip.key})
                    clips.append(clip.samples)
            history.append({"role": "user", "content": content})
        else:
            text = "".join(part for part in message.parts if not isinstance(part, AudioPart))
            history.append({"role": message.role, "content": text})
    return history, replies, clips


def reference_prompt(
    engine: TransformersEngine,
    conversation: Sequence[Message],
    generated: Mapping[str, Sequence[int]],
    tools: Sequence[FunctionSpec] = (),
) -> tuple[list[int], dict[str, torch.Tensor]]:
    """The prompt of a reply to `conversation` as the processor renders it: its token ids (each clip's
    `<|AUDIO|>` expanded by the processor), and the clips' features for the model.

    Args: as for `reference_generate`.

    Raises:
        ValueError: a reply's placeholder did not survive tokenization as one run of ids.
    """
    processor, tokenizer = engine.processor, engine.tokenizer
    history, replies, clips = _hf_conversation(conversation, generated)
    if tools:
        specs = [tool_json(spec) for spec in tools]
        text = processor.apply_chat_template(
            history, tools=specs, chat_template=TOOLS_TEMPLATE, add_generation_prompt=True, tokenize=False
        )
    else:
        text = processor.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, audio=clips or None, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    ids: list[int] = inputs["input_ids"][0].tolist()
    for index, reply in enumerate(replies):
        mark = tokenizer.encode(_PLACEHOLDER.format(index), add_special_tokens=False)
        at = next((i for i in range(len(ids)) if ids[i : i + len(mark)] == mark), None)
        if at is None:
            raise ValueError(f"the placeholder of reply {index} was not tokenized as one run of ids")
        ids[at : at + len(mark)] = reply
    model = engine.model
    audio: dict[str, torch.Tensor] = {}
    if clips:
        audio = {
            "input_features": inputs["input_features"].to(device=model.device, dtype=model.dtype),
            "feature_attention_mask": inputs["feature_attention_mask"].to(model.device),
        }
    return ids, audio


def reference_generate(
    engine: TransformersEngine,
    conversation: Sequence[Message],
    generated: Mapping[str, Sequence[int]],
    max_new_tokens: int,
    tools: Sequence[FunctionSpec] = (),
) -> list[int]:
    """Greedy reply to `conversation` by `generate()` over the whole history, from scratch.

    Blocking and slow by design (see the module docstring); run it where the model may run.

    Args:
        engine: the loaded model, its processor and stop ids.
        conversation: the messages as an `EngineSession` takes them.
        generated: token ids of assistant replies by message key; an assistant message whose key is
            here is rendered as those ids, others as their text.
        max_new_tokens: the most tokens to generate.
        tools: the functions shown to the model (rendered by `TOOLS_TEMPLATE`).

    Returns:
        The generated ids, without the stop token.

    Raises:
        ValueError: a reply's placeholder did not survive tokenization as one run of ids.
    """
    ids, audio = reference_prompt(engine, conversation, generated, tools)
    model = engine.model
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids], device=model.device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            suppress_tokens=engine.suppressed.tolist(),
            eos_token_id=sorted(engine.stop_ids),
            **audio,
        )
    reply_ids: list[int] = out[0, len(ids) :].tolist()
    if reply_ids and reply_ids[-1] in engine.stop_ids:
        reply_ids.pop()
    return reply_ids
