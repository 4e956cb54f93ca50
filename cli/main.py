"""The `aural` command: `aural serve` runs the runtime, `aural say` talks to one.

This is the composition root: it may reach both the runtime and the SDK, each imported only by the
subcommand that needs it (`pip install aural` has the SDK without the runtime's torch).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .say import add_arguments as add_say_arguments
from .say import say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aural", description="Realtime runtime and client for audio-language models.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the realtime websocket server")
    say_parser = commands.add_parser("say", help="stream an audio file to a runtime and print the reply")
    add_say_arguments(say_parser)
    try:
        from .serve import add_arguments as add_serve_arguments
    except ImportError as exc:  # the SDK-only install
        serve_parser.set_defaults(missing=str(exc))
    else:
        add_serve_arguments(serve_parser)
    args = parser.parse_args(argv)
    if args.command == "serve":
        if getattr(args, "missing", None):
            parser.error(f"the runtime is not installed (pip install 'aural[runtime]'): {args.missing}")
        from .serve import serve

        serve(args)
        return 0
    return asyncio.run(say(args))


if __name__ == "__main__":
    sys.exit(main())
