"""The dependency rules of the house, checked twice: on every module's own imports (static, via the AST), and
on everything importing a package loads (each package imported in a fresh interpreter, `sys.modules` read):
a rule a module keeps may still be broken through what it imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"protocols": "aural.protocols", "sdk": "aural.sdk", "runtime": "aural.runtime", "cli": "aural.cli"}
MODEL_CODE = {
    "engine.py",  # engine/qwen2_audio/
    "jobs.py",
    "presets.py",
    "audio_encoder.py",
    "detokenizer.py",  # engine/: reads the tokenizer's byte table
    "kv_pool.py",  # engine/batching/
    "paged.py",
    "runner.py",
    "graphs.py",
    "scheduler.py",
    "residency.py",
}
SESSION_FORBIDS = ("torch", "transformers", "llguidance", "onnxruntime", "av", "aiohttp", "asyncio")


def _imports(path: Path) -> set[str]:
    """Absolute names of everything a module imports, relative imports resolved."""
    folder = path.parent.relative_to(ROOT).parts
    package = ".".join([PACKAGES[folder[0]], *folder[1:]])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _within(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def _violations(folder: str, forbidden: tuple[str, ...], skip: set[str] | None = None) -> list[str]:
    found = []
    for path in _modules(folder):
        if skip and path.name in skip:
            continue
        found += [f"{path.relative_to(ROOT)} imports {name}" for name in _imports(path) if _within(name, forbidden)]
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden", "skip"),
    [
        (
            "protocols",
            ("aural.sdk", "aural.runtime", "asyncio", "torch", "aiohttp", "websockets", "numpy", "jsonschema"),
            None,
        ),
        ("sdk", ("aural.runtime", "aural.cli", "torch", "transformers", "aiohttp", "structlog"), None),
        ("runtime", ("aural.sdk", "aural.cli"), None),
        ("runtime/session", (*SESSION_FORBIDS, "socket", "aural.runtime.server", "aural.runtime.audio"), None),
        ("runtime/session", ("aural.runtime.engine.tool_grammar",), None),
        ("runtime", ("torch", "transformers"), MODEL_CODE),
        ("runtime", ("onnxruntime",), {"vad.py"}),  # the voice activity model runner alone
        ("runtime", ("llguidance",), {"tool_grammar.py"}),  # the grammar engine behind one module
        ("runtime/engine", ("av", "aiohttp", "onnxruntime"), None),
        ("runtime/store", ("torch", "transformers", "aiohttp", "aural.runtime.server"), None),
        ("runtime/server", ("ray", "fastapi", "starlette", "aural.runtime.cluster"), None),  # Ray is the cluster's
        ("runtime/engine", ("ray", "aural.runtime.cluster"), None),
        ("runtime/session", ("ray",), None),
    ],
)
def test_dependency_rules(folder: str, forbidden: tuple[str, ...], skip: set[str] | None) -> None:
    assert _violations(folder, forbidden, skip) == []


def test_model_code_lives_in_the_engine() -> None:
    holders = {p.relative_to(ROOT).as_posix() for p in _modules("runtime") if p.name in MODEL_CODE}
    assert all(h.startswith("runtime/engine/") for h in holders)
    engine = ROOT / "runtime/engine/qwen2_audio/engine.py"
    assert _imports(engine) >= {"torch", "transformers"}, "the checker must see imports"


def _loaded(script: str) -> set[str]:
    """The modules a fresh interpreter holds after running `script`."""
    report = "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script) + report], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("aural.protocols", ("aural.sdk", "aural.runtime", "torch", "aiohttp", "websockets", "numpy", "asyncio")),
        ("aural.sdk", ("aural.runtime", "aural.cli", "torch", "transformers", "aiohttp", "structlog")),
        ("aural.runtime.session", (*SESSION_FORBIDS, "aural.runtime.server", "aural.runtime.audio")),
        ("aural.runtime.engine.base", ("torch", "transformers", "llguidance", "onnxruntime", "av", "aiohttp")),
        ("aural.runtime.audio", ("torch", "transformers", "llguidance", "aiohttp")),
        ("aural.runtime.server", ("torch", "transformers", "llguidance", "ray")),  # it serves any engine
        ("aural.runtime.engine.qwen2_audio.engine", ("ray", "fastapi", "aural.runtime.cluster")),
        ("aural.runtime.store", ("torch", "transformers", "aiohttp", "aural.runtime.server", "ray")),  # Redis's too
    ],
)
def test_importing_a_package_loads_nothing_it_must_not(package: str, forbidden: tuple[str, ...]) -> None:
    """Every module of `package` imported (transitively, whatever it imports in turn)."""
    loaded = _loaded(f"""
        import importlib, pkgutil
        package = importlib.import_module({package!r})
        for found in pkgutil.walk_packages(getattr(package, "__path__", []), {package!r} + "."):
            importlib.import_module(found.name)
    """)
    assert sorted(name for name in loaded if _within(name, forbidden)) == []


def test_a_session_with_tools_never_loads_the_grammar_library() -> None:
    """Its schema checks are the engine's capability, handed over (and run off the loop, by the ingest stage,
    which the script plays here): the session itself never reaches for it."""
    loaded = _loaded("""
        import json
        from aural.protocols import decode_client_event
        from aural.runtime.engine.base import ModelCapabilities
        from aural.runtime.session.commands import CheckSchemas
        from aural.runtime.session.inputs import ClientSent, SchemasChecked
        from aural.runtime.session.session import ConversationSession
        from aural.runtime.session.tool_calls import parameters_problem

        capabilities = ModelCapabilities(480000, 8192, lambda schema: None)
        session = ConversationSession("m", capabilities)
        tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
        for event in ({"type": "session.update", "session": {"tools": [tool]}},
                      {"type": "response.create", "response": {"tools": [tool], "tool_choice": "required"}}):
            step = session.receive(ClientSent(decode_client_event(json.dumps(event))))
            for check in [command for command in step.commands if isinstance(command, CheckSchemas)]:
                verdicts = {key: parameters_problem(schema, capabilities.check_schema) for key, schema in check.schemas}
                step = session.receive(SchemasChecked(verdicts, check.resume))
            assert step.events[0].type != "error", step
    """)
    assert not {"llguidance", "aural.runtime.engine.tool_grammar"} & loaded


def test_the_runtime_package_is_light_until_local_is_asked_for() -> None:
    """`aural.runtime.local` is there when asked for, and only then loads the server; the model's libraries
    wait for the first connection (`LocalRuntime.start`)."""
    plain = _loaded("import aural.runtime")
    heavy = ("aiohttp", "torch", "aural.runtime.server", "aural.sdk")
    assert sorted(name for name in plain if _within(name, heavy)) == []
    asked = _loaded("import aural.runtime\nassert callable(aural.runtime.local)")
    assert "aural.runtime.server.local" in asked
    assert sorted(name for name in asked if _within(name, ("torch", "transformers", "aural.sdk"))) == []
