"""Aural's extensions of the OpenAI Realtime GA protocol, named in one place for the generated documents.

The names Aural adds to the wire start with `aural.`: OpenAI clients never send them and skip what they
do not know, so they cost compatibility nothing. Some fields of GA objects also take values GA does not
name (`FIELD_EXTENSIONS`); GA values keep their GA meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from .server_events import RESUME_QUERY, AuralSessionResumed

BINARY_AUDIO = "aural.binary-audio"
"""The websocket subprotocol under which a client may send input audio as binary frames."""


def _sentences(docstring: str, prefix: str) -> str:
    """A docstring on one line without `prefix`, its first letter capitalised."""
    text = " ".join(docstring.split()).removeprefix(prefix)
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Extension:
    """One `aural.` name on the wire.

    Attributes:
        name: the name as sent.
        kind: where it goes (a websocket subprotocol, a query parameter, a server event's `type`).
        description: what it does, for a person writing a client.
    """

    name: str
    kind: str
    description: str


EXTENSIONS = (
    Extension(
        BINARY_AUDIO,
        "websocket subprotocol",
        "A client that offers it (and not `realtime`) may send input audio as binary websocket messages, raw bytes "
        "in the session's input format, instead of base64 `input_audio_buffer.append` events. The server echoes "
        "it when it takes it up; JSON events keep working alongside.",
    ),
    Extension(
        RESUME_QUERY,
        "query parameter of /v1/realtime",
        "`/v1/realtime?model=NAME&aural.resume=<session id>` takes over a conversation whose connection dropped, "
        "within the server's resume grace (`aural serve --resume-grace`). The server answers `session.created` "
        "then `aural.session.resumed`; an unknown or expired id gets an `error` (`session_not_found`).",
    ),
    Extension(
        AuralSessionResumed.model_fields["type"].default,
        "server event",
        _sentences(AuralSessionResumed.__doc__ or "", "Aural extension: "),
    ),
)
"""Every `aural.` name, in the order a client meets them."""

FIELD_EXTENSIONS = (
    (
        "session.audio.input.format",
        "`audio/pcm` takes any `rate` from 8000 to 192000 Hz, `channels` 1 or 2 and `encoding` `pcm16` or "
        "`float32`; `type` may also name a compressed stream: `audio/webm`, `audio/ogg`, `audio/mp4`, "
        "`audio/aac`, `audio/mpeg`, `audio/flac`, `audio/wav`.",
    ),
    (
        "session.temperature, session.top_p, response.temperature, response.top_p",
        "Sampling settings (GA has none); absent or 0 decodes greedily.",
    ),
    (
        "conversation.item.truncate.text_end",
        "Cuts an assistant's `output_text` part at this many characters: how much of the text a client's "
        "text-to-speech spoke before it was interrupted (`audio_end_ms` is then ignored).",
    ),
)
"""Fields of GA events that take values GA does not define: (where, what)."""
