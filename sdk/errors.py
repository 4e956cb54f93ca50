"""The exceptions the SDK raises, all under one root so that `except AuralError` catches them all.

    AuralError                  root of the tree
    ├── AuralServerError        the server answered with an `error` event
    │   └── AuralResponseError  a response ended `failed` (its `response.done` says why)
    ├── AuralConnectionError    could not connect, or the connection closed unexpectedly
    └── AuralProtocolError      the server sent an event this SDK cannot parse

Mistakes in the caller's own arguments (a bad session field, an array with no sample rate) raise the
usual `ValueError` / `TypeError` before anything is sent.
"""

from __future__ import annotations

from aural.protocols.models import ErrorDetail, Response


class AuralError(Exception):
    """Base class of every exception raised by `aural.sdk`."""


class AuralServerError(AuralError):
    """An `error` event from the server, for a request made by this client.

    Args:
        message: the server's sentence for a person.
        code: the wire error code (`aural.protocols.ErrorCode` values), when the server gave one.
        param: the offending field, dotted, when known.
        event_id: the `event_id` of the client event that caused the error.
        error_type: `invalid_request_error` for a client mistake, `server_error` for the server's.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        event_id: str | None = None,
        error_type: str = "server_error",
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id
        self.error_type = error_type

    @classmethod
    def from_detail(cls, detail: ErrorDetail) -> AuralServerError:
        """Build the exception from the `error` object of an `error` event."""
        return cls(
            detail.message,
            code=detail.code,
            param=detail.param,
            event_id=detail.event_id,
            error_type=detail.type,
        )


class AuralResponseError(AuralServerError):
    """A response that ended with status `failed`: the model could not serve it (the conversation no longer
    fits, the server's KV budget is spent, a function call outgrew the server's per-call limit...). `code` and
    `message` are those of its `status_details.error`; the text streamed before the failure stays readable on
    the stream, and the conversation goes on.

    Args:
        response: the response as `response.done` left it (its status, output and usage).
    """

    def __init__(self, response: Response) -> None:
        details = response.status_details
        error = details.error if details else None
        super().__init__(
            error.message if error and error.message else "The response failed.",
            code=error.code if error else None,
            error_type=error.type if error else "server_error",
        )
        self.response = response


class AuralConnectionError(AuralError):
    """The websocket could not be opened, or closed while the client still expected events."""


class AuralProtocolError(AuralError):
    """The server sent a message that is not valid JSON or not a valid event of a known type.

    Events of unknown types are not errors: they are skipped (see `Connection.recv`).
    """
