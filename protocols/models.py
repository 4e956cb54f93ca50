"""Objects carried inside events: session configuration, conversation items, responses, errors.

Field names and literals follow the GA OpenAI Realtime API. Aural's extensions are marked as such in
their docstrings; OpenAI clients never need to send them. Unknown fields sent by clients are ignored
(LiveKit sends settings Aural cannot honour), never rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    """Base of every wire object: ignores unknown fields, validates known ones strictly."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)


# --- audio formats -------------------------------------------------------------------------------


class PcmFormat(WireModel):
    """Uncompressed little-endian PCM, interleaved when stereo.

    GA: `{"type": "audio/pcm", "rate": 24000}`, 16-bit mono at 24 kHz. Aural extensions, each optional (an
    omitted field keeps the GA value and is not echoed back):

    - `rate`: any sample rate from 8000 to 192000 Hz (8000, 16000, 22050, 44100, 48000, ...).
    - `channels`: 1 (mono) or 2 (stereo, interleaved; downmixed to (L+R)/2).
    - `encoding`: "pcm16" (signed 16-bit, the GA default) or "float32" (IEEE 754, full scale ±1.0).
    """

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: int = Field(default=24000, ge=8000, le=192000)
    channels: Literal[1, 2] | None = None
    encoding: Literal["pcm16", "float32"] | None = None


class PcmuFormat(WireModel):
    """G.711 μ-law, 8 kHz mono."""

    type: Literal["audio/pcmu"] = "audio/pcmu"


class PcmaFormat(WireModel):
    """G.711 A-law, 8 kHz mono."""

    type: Literal["audio/pcma"] = "audio/pcma"


class StreamFormat(WireModel):
    """Aural extension: a compressed or containerised stream, decoded as its chunks arrive.

    `type` names the stream; its rate and channels are read from the stream itself:

    - `audio/webm`: WebM (Matroska) with Opus, as browsers' MediaRecorder emits (Chrome, Edge, Firefox).
    - `audio/ogg`: Ogg with Opus (Firefox's MediaRecorder, `ffmpeg -c:a libopus x.ogg`).
    - `audio/mp4`: AAC in MP4 / M4A, fragmented (Safari's MediaRecorder) or "faststart" (the `moov` box
      before the media data). A plain M4A, with `moov` at the end, cannot be decoded before its end and is
      refused as soon as its media data comes first.
    - `audio/aac`: AAC in ADTS frames.
    - `audio/mpeg`: MP3, with or without a leading ID3v2 tag.
    - `audio/flac`: native FLAC.
    - `audio/wav`: RIFF WAVE holding 16-bit PCM, 32-bit float or G.711, mono or stereo.

    Each stream starts with its header. Committing or clearing the input audio buffer ends the stream, and
    so does an `error` about it: the audio appended next must start a new stream, header included. The
    `audio` of an `input_audio` content part is one whole stream. Stereo is downmixed to (L+R)/2.
    """

    type: Literal["audio/webm", "audio/ogg", "audio/mp4", "audio/aac", "audio/mpeg", "audio/flac", "audio/wav"]


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat | StreamFormat, Field(discriminator="type")]


class ServerVad(WireModel):
    """Server-side voice activity detection settings (GA `server_vad`)."""

    type: Literal["server_vad"] = "server_vad"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(default=None, ge=0, le=10_000)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = Field(default=None, ge=1, le=3_600_000)


class SemanticVad(WireModel):
    """GA `semantic_vad` settings: Aural runs them as `server_vad` (it has no semantic turn model)."""

    type: Literal["semantic_vad"] = "semantic_vad"
    eagerness: str | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class AudioTranscription(WireModel):
    """Input transcription settings; `model` is accepted and ignored by Aural."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class AudioInputConfig(WireModel):
    """`session.audio.input`."""

    format: AudioFormat | None = None
    turn_detection: TurnDetection | None = None
    transcription: AudioTranscription | None = None


class AudioConfig(WireModel):
    """`session.audio`: Aural produces text, so only the input side matters."""

    input: AudioInputConfig | None = None


class FunctionTool(WireModel):
    """A function the model may call, described by a JSON Schema."""

    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolChoiceFunction(WireModel):
    """Forces a call of the named function."""

    type: Literal["function"] = "function"
    name: str


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction
MaxTokens = int | Literal["inf"]


class TokenLimits(WireModel):
    """`post_instructions`: the most tokens the conversation may take after the instructions (the system
    turn, tools included) before it is truncated."""

    post_instructions: int | None = Field(default=None, ge=1)


class RetentionRatioTruncation(WireModel):
    """When the conversation outgrows its limit, drop the oldest messages until `retention_ratio` of the
    limit is used, so that the next turns reuse the cache until the limit is reached again."""

    type: Literal["retention_ratio"] = "retention_ratio"
    retention_ratio: float = Field(ge=0.0, le=1.0)
    token_limits: TokenLimits | None = None


Truncation = Literal["auto", "disabled"] | RetentionRatioTruncation


class SessionConfig(WireModel):
    """The session object of `session.update`, `session.created` and `session.updated`.

    In `session.update` every field is optional and only the fields present change. `temperature` and
    `top_p` are Aural extensions (GA has no sampling settings); both absent or 0 means greedy decoding.
    """

    type: Literal["realtime"] = "realtime"
    id: str | None = None
    object: Literal["realtime.session"] | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioConfig | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: MaxTokens | None = None
    truncation: Truncation | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)


# --- conversation items --------------------------------------------------------------------------


class InputText(WireModel):
    type: Literal["input_text"] = "input_text"
    text: str


class InputAudio(WireModel):
    """User audio. In `conversation.item.create`, `audio` is base64 in the session's input format."""

    type: Literal["input_audio"] = "input_audio"
    audio: str | None = None
    transcript: str | None = None


class OutputText(WireModel):
    type: Literal["output_text"] = "output_text"
    text: str


ContentPart = Annotated[InputText | InputAudio | OutputText, Field(discriminator="type")]


class MessageItem(WireModel):
    """A system, user or assistant message."""

    type: Literal["message"] = "message"
    id: str | None = None
    object: Literal["realtime.item"] = "realtime.item"
    status: Literal["completed", "incomplete", "in_progress"] | None = None
    role: Literal["system", "user", "assistant"]
    content: list[ContentPart]


class FunctionCallItem(WireModel):
    """A call of a function tool made by the model."""

    type: Literal["function_call"] = "function_call"
    id: str | None = None
    object: Literal["realtime.item"] = "realtime.item"
    status: Literal["completed", "incomplete", "in_progress"] | None = None
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(WireModel):
    """The result of a function call, sent by the client."""

    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    object: Literal["realtime.item"] = "realtime.item"
    status: Literal["completed", "incomplete", "in_progress"] | None = None
    call_id: str
    output: str


class ItemReference(WireModel):
    """A reference to an existing item, allowed in `response.create`'s `input`."""

    type: Literal["item_reference"] = "item_reference"
    id: str


Item = Annotated[MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")]
InputItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | ItemReference, Field(discriminator="type")
]


# --- responses -----------------------------------------------------------------------------------


class ResponseParams(WireModel):
    """`response.create`'s `response`: per-response overrides of the session configuration."""

    instructions: str | None = None
    output_modalities: list[Literal["text", "audio"]] | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: MaxTokens | None = None
    conversation: Literal["auto", "none"] | None = None
    input: list[InputItem] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)


class CachedTokensDetails(WireModel):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0


class InputTokenDetails(WireModel):
    """Prompt tokens by kind; `cached_tokens` were reused from the conversation's resident KV cache."""

    cached_tokens: int = 0
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    cached_tokens_details: CachedTokensDetails = Field(default_factory=CachedTokensDetails)


class OutputTokenDetails(WireModel):
    text_tokens: int = 0
    audio_tokens: int = 0


class Usage(WireModel):
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: InputTokenDetails = Field(default_factory=InputTokenDetails)
    output_token_details: OutputTokenDetails = Field(default_factory=OutputTokenDetails)


class StatusError(WireModel):
    type: str
    code: str | None = None
    message: str | None = None


class StatusDetails(WireModel):
    type: Literal["completed", "cancelled", "incomplete", "failed"]
    reason: Literal["turn_detected", "client_cancelled", "max_output_tokens", "content_filter"] | None = None
    error: StatusError | None = None


ResponseStatus = Literal["in_progress", "completed", "cancelled", "incomplete", "failed"]
Modality = Literal["text", "audio"]


def _text_only() -> list[Modality]:
    return ["text"]


class Response(WireModel):
    """The `response` object of `response.created` and `response.done`."""

    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: ResponseStatus = "in_progress"
    status_details: StatusDetails | None = None
    output: list[Item] = Field(default_factory=list)
    output_modalities: list[Modality] = Field(default_factory=_text_only)
    conversation_id: str | None = None
    max_output_tokens: MaxTokens | None = None
    metadata: dict[str, str] | None = None
    usage: Usage | None = None


class TextPart(WireModel):
    """The `part` of `response.content_part.added` / `.done`."""

    type: Literal["text"] = "text"
    text: str = ""


class ErrorDetail(WireModel):
    """The object inside an `error` event."""

    type: str
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None


class RateLimit(WireModel):
    name: Literal["requests", "tokens"]
    limit: int
    remaining: int
    reset_seconds: float
