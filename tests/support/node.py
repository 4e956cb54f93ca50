"""Running JavaScript from pytest: the checks of `tests/js/` (ajv, the AsyncAPI parser) and the Node examples.

Without Node.js or without the packages (`make js` installs them), a test is skipped and says why; with
`AURAL_REQUIRE_JS=1` (CI sets it) it fails instead, so that the checks cannot silently stop running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parents[1] / "js"
REQUIRED = os.environ.get("AURAL_REQUIRE_JS") == "1"
NODE_TIMEOUT = 120.0
"""A guard against hangs only; never asserted on."""


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and AURAL_REQUIRE_JS=1 requires the JavaScript checks")
    pytest.skip(reason)


def node_for(packages: Path) -> str:
    """The `node` executable, once the packages of the folder `packages` are installed; else the test is
    skipped (or fails, under `AURAL_REQUIRE_JS=1`)."""
    node = shutil.which("node")
    if node is None:
        _unavailable("Node.js is not installed (apt-get install nodejs npm)")
    if not (packages / "node_modules").is_dir():
        _unavailable(f"the packages of {packages.name}/ are not installed (make js)")
    assert node is not None
    return node


def run_node(script: str | Path, *args: str, cwd: Path = JS_DIR) -> str:
    """Run `script` (a path under `tests/js/`, or absolute) with `args` in `cwd` and return what it printed;
    fail the test with its output when it exits with an error."""
    command = [node_for(JS_DIR), str(JS_DIR / script), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}{done.stderr}"
    return done.stdout
