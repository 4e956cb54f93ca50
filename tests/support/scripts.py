"""Running the examples as a user runs them: a Python program in a subprocess, from the repository's root."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "examples" / "sample.wav")
SCRIPT_TIMEOUT = 120.0
"""A guard against hangs only; never asserted on."""


async def run_script(*args: str) -> str:
    """Run `python ARGS...` in the repository's root; its output (stdout and stderr), once it exited with 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT
    )
    output, _ = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT)
    assert process.returncode == 0, output.decode()
    return output.decode()


def printed_replies(output: str) -> list[int]:
    """The sizes of the replies a framework example printed, each ended by ` [reply of N characters]`."""
    return [int(size) for size in re.findall(r" \[reply of (\d+) characters\]", output)]
