"""The dependency rules of the house, checked on every module's imports (static, via the AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"protocols": "aural.protocols", "sdk": "aural.sdk", "runtime": "aural.runtime", "cli": "aural.cli"}
MODEL_CODE = {
    "engine.py",  # engine/qwen2_audio/
    "jobs.py",
    "presets.py",
    "audio_encoder.py",
    "kv_pool.py",  # engine/batching/
    "paged.py",
    "runner.py",
    "graphs.py",
    "scheduler.py",
}


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


def _violations(folder: str, forbidden: tuple[str, ...], skip: set[str] | None = None) -> list[str]:
    found = []
    for path in _modules(folder):
        if skip and path.name in skip:
            continue
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
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
        (
            "runtime/session",
            ("torch", "transformers", "asyncio", "aiohttp", "av", "socket", "aural.runtime.server"),
            None,
        ),
        ("runtime", ("torch", "transformers"), MODEL_CODE),
        ("runtime", ("onnxruntime",), {"vad.py"}),  # the voice activity model runner alone
        ("runtime", ("llguidance",), {"tool_grammar.py"}),  # the grammar engine behind one module
        ("runtime/engine", ("av", "aiohttp", "onnxruntime"), None),
    ],
)
def test_dependency_rules(folder: str, forbidden: tuple[str, ...], skip: set[str] | None) -> None:
    assert _violations(folder, forbidden, skip) == []


def test_model_code_lives_in_the_engine() -> None:
    holders = {p.relative_to(ROOT).as_posix() for p in _modules("runtime") if p.name in MODEL_CODE}
    assert all(h.startswith("runtime/engine/") for h in holders)
    engine = ROOT / "runtime/engine/qwen2_audio/engine.py"
    assert _imports(engine) >= {"torch", "transformers"}, "the checker must see imports"
