"""How `aural say` tells the end of a reply, on stderr under its text."""

from __future__ import annotations

from aural.sdk import Response


def outcome(response: Response) -> str:
    """How a reply ended and what it used, for a line under it: a reply cut by the token cap is said as such."""
    usage = response.usage
    used = (
        f"{usage.input_tokens} input tokens ({usage.input_token_details.audio_tokens} audio), "
        f"{usage.output_tokens} output tokens"
        if usage is not None
        else "no usage reported"
    )
    reason = response.status_details.reason if response.status_details else None
    if response.status == "incomplete" and reason == "max_output_tokens":
        limit = f"max_output_tokens={response.max_output_tokens}" if response.max_output_tokens else "max_output_tokens"
        return f"[stopped at the token limit ({limit}): {used}]"
    return f"[{response.status}{f' ({reason})' if reason else ''}: {used}]"
