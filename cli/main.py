"""The `aural` command: `aural serve` runs the runtime, `aural say` talks to one.

This is the composition root: it may reach both the runtime and the SDK, each imported only by the
subcommand that needs it (`pip install aural` has the SDK without the runtime's torch): `aural --help` and
`aural say` never import the runtime, and `aural serve` says how to install it when it is missing. Every
problem ends the command with one line on stderr: status 2 for a usage problem, 1 for a failure, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import NoReturn

from .helptext import DefaultsFormatter
from .say import add_arguments as add_say_arguments
from .say import say

RUNTIME_EXTRA = "pip install 'aural[runtime]'"


class Parser(argparse.ArgumentParser):
    """A parser whose errors are one line: the usage of `aural serve` alone runs to dozens."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run `aural` with `argv` (None: the process's arguments); the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = Parser(prog="aural", description="Realtime runtime and client for audio-language models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="run the realtime websocket server", formatter_class=DefaultsFormatter
    )
    say_parser = commands.add_parser(
        "say", help="stream an audio file or the microphone to a runtime and print the replies",
        formatter_class=DefaultsFormatter,
    )  # fmt: skip
    add_say_arguments(say_parser)
    missing: ImportError | None = None
    if next((arg for arg in argv if not arg.startswith("-")), None) == "serve":  # only `serve` imports the runtime
        try:
            from .serve import add_arguments as add_serve_arguments
        except ImportError as exc:  # the SDK-only install: whatever the options, say what is missing
            missing = exc
            serve_parser.description = f"The runtime is not installed: {RUNTIME_EXTRA}"
        else:
            add_serve_arguments(serve_parser)
    args = parser.parse_known_args(argv)[0] if missing else parser.parse_args(argv)
    try:
        return asyncio.run(say(args)) if args.command == "say" else _serve(args, missing)
    except KeyboardInterrupt:
        print(f"aural {args.command}: interrupted", file=sys.stderr)
        return 130


def _serve(args: argparse.Namespace, missing: ImportError | None) -> int:
    """Run `aural serve`, or say how to install the runtime it cannot import."""
    try:
        if missing is not None:
            raise missing
        from .serve import serve

        serve(args)
    except ImportError as exc:
        what = f"no module {exc.name!r}" if exc.name else str(exc)
        print(f"aural serve: the runtime is not installed ({what}): {RUNTIME_EXTRA}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
