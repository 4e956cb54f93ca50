"""The runtime's exception tree. Every failure that reaches a client is one of these, turned into a wire
error code in one place (`aural.runtime.session.wire_errors`), never by `str(e)`.

    RuntimeFailure                  something the runtime could not do; `recoverable` when the
    │                               conversation goes on unchanged (the default)
    ├── EngineError                 the model could not serve a request
    │   ├── ContextExceeded         the conversation does not fit the model's context window
    │   ├── KVBudgetExceeded        the KV pool cannot hold it, within its byte budget
    │   ├── GrammarError            the tools' grammar cannot be compiled or was broken
    │   ├── CallTooLong             a function call outgrew the per-call token limit; it was dropped
    │   └── ModelFailure            the model raised mid-forward; the session's cache was dropped
    ├── AudioError                  input audio that cannot be decoded
    └── ToolFailure                 a server-side tool could not be run

Nothing here imports torch, transformers or the wire package: the engine raises these, the session
maps them.
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    """The base of the tree. `message` is a sentence for a person, safe to show a client."""

    recoverable = True
    """True: the conversation goes on as it was (only the request failed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EngineError(RuntimeFailure):
    """The model could not serve a request."""


class ContextExceeded(EngineError):
    """The conversation (with the reply's room) does not fit the model's context window."""


class KVBudgetExceeded(EngineError):
    """The KV pool cannot hold the conversation within its byte budget (`--kv-budget`), and the server
    refuses rather than waits (`--on-full error`), or the conversation alone is larger than the pool."""


class GrammarError(EngineError):
    """A grammar (from the tools' schemas) that the grammar library cannot compile, or a token outside it."""


class CallTooLong(EngineError):
    """A function call reached the engine's limit of tokens per call before it was complete, so it was dropped
    (a limit of its own: the response's `max_output_tokens` may be far from reached)."""


class ModelFailure(EngineError):
    """The model raised during a forward pass; the session's cache could not be trusted and was dropped
    (the next request recomputes it)."""


class AudioError(RuntimeFailure):
    """Input audio that cannot be decoded in its declared format."""


class ToolFailure(RuntimeFailure):
    """A server-side tool that could not be run."""
