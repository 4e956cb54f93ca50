"""Server tools' rounds: the calls a completed response made of the runtime's own tools run, their outputs
join the conversation, and the response continues by itself.

Server tools (functions the runtime runs itself) are offered to the model on every response in the
conversation besides the client's. When a completed response called some, `RunTools` asks the driver to
run them; each output joins the conversation as a `function_call_output` item, and once all are in, the
router continues with a new response over the conversation, of the same parameters (`tool_choice` back to
auto; after `max_rounds` such rounds in a row, "none", so that the model answers). A response that called
client tools too is not continued: the client continues after answering its own calls. Cancelling (a
`response.cancel` with no response running, the user talking over) stops the calls still running and
their continuation.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aural.protocols.models import ResponseParams

from .commands import CancelTools, RunTools, Step, order
from .response_run import ResponseRun


@dataclass(frozen=True)
class Continuation:
    """The response that continues a round once every output is in."""

    params: ResponseParams
    depth: int
    """Rounds in a row that the runtime answered and continued, this one included."""


@dataclass
class _Round:
    """The server tools' calls of one finished response, running in the runtime."""

    waiting: set[str]
    """The call ids not answered yet."""
    follow_up: Continuation | None
    """None when the response called client tools too (the client continues after answering its own)."""


class ToolRounds:
    """The rounds of server tool calls running in one session, by the id of the response that made them.

    Args:
        names: the server tools' names.
        max_rounds: rounds answered and continued in a row before the continuation must answer.
    """

    def __init__(self, names: Collection[str], max_rounds: int) -> None:
        self._names = frozenset(names)
        self._max_rounds = max_rounds
        self._rounds: dict[str, _Round] = {}

    def after(self, run: ResponseRun) -> Step:
        """The command that runs the server tools' calls of a completed response, if it made any."""
        calls = [call.item for call in run.calls.values() if call.done]
        mine = tuple(call.model_copy(deep=True) for call in calls if call.name in self._names - run.client_tools)
        if not mine:
            return Step()
        depth = run.depth + 1
        choice = "auto" if depth < self._max_rounds else "none"
        follow_up = run.params.model_copy(update={"tool_choice": choice, "input": None})
        continued = Continuation(follow_up, depth) if len(mine) == len(calls) else None
        self._rounds[run.id] = _Round({call.call_id for call in mine}, continued)
        return order(RunTools(run.id, mine))

    def returned(self, call_id: str) -> tuple[bool, Continuation | None]:
        """A call returned: whether its output is still wanted (not cancelled meanwhile), and the continuation
        once it was the last of its round."""
        found = next((key for key, round_ in self._rounds.items() if call_id in round_.waiting), None)
        if found is None:
            return False, None
        round_ = self._rounds[found]
        round_.waiting.discard(call_id)
        if round_.waiting:
            return True, None
        del self._rounds[found]
        return True, round_.follow_up

    def holds(self, response_id: str | None) -> bool:
        """Whether calls run for response `response_id` (None: for any)."""
        return bool(self._rounds) and response_id in (None, *self._rounds)

    def cancel(self) -> Step:
        """Stop every call still running; no continuation follows."""
        cancelled = tuple(self._rounds)
        self._rounds.clear()
        return order(CancelTools(cancelled)) if cancelled else Step()
