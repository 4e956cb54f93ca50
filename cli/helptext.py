"""The options' help with their defaults, on the terminal (`--help`) and in the README (`python -m aural.cli.helptext`
prints the tables of its "Command line" section, which a test keeps equal to the parsers).

An option's default is the one its help names, "(default: ...)" at its end, when the value alone would not say it
(`--kv-budget`'s None means "80% of the free memory"); otherwise its value, unless it has none (None, off, empty).
"""

from __future__ import annotations

import argparse
import re

_NAMED_DEFAULT = re.compile(r"\s*\(default: ([^()]*)\)$")


def split_help(action: argparse.Action) -> tuple[str, str | None]:
    """An option's help without its default, and the default as text (None: it has none to tell)."""
    text = (action.help or "").replace("%%", "%")
    named = _NAMED_DEFAULT.search(text)
    if named:
        return text[: named.start()], named.group(1)
    value = action.default
    if value is None or value is False or value == [] or value == argparse.SUPPRESS or not action.option_strings:
        return text, None
    return text, f"{value:g}" if isinstance(value, float) else str(value)


class DefaultsFormatter(argparse.HelpFormatter):
    """`--help` with each option's default after its help (`split_help`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = split_help(action)
        text = f"{text} (default: {default})" if default is not None else text
        return text.replace("%", "%%")  # argparse formats the help with %


def options_table(parser: argparse.ArgumentParser) -> str:
    """A Markdown table of `parser`'s arguments: the option (or argument), its default, what it does."""
    rows = ["| Option | Default | Meaning |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        text, default = split_help(action)
        metavar = action.metavar if isinstance(action.metavar, str) else None
        metavar = metavar or ("{" + ",".join(action.choices) + "}" if action.choices else action.dest.upper())
        name = metavar if not action.option_strings else " ".join(action.option_strings)
        if action.option_strings and action.nargs != 0:
            name += f" {metavar}"
        rows.append(f"| `{name}` | {f'`{default}`' if default is not None else ''} | {text.replace('|', '/')} |")
    return "\n".join(rows)


def main() -> None:
    """Print the README's tables: `aural serve`'s options, then `aural say`'s."""
    from . import say, serve

    tables = []
    for command in (serve, say):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        tables.append(options_table(parser))
    print(*tables, sep="\n\n")


if __name__ == "__main__":
    main()
