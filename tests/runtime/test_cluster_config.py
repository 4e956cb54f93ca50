"""The Serve config file that the README documents builds the application it describes (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.deployment import Application

from aural.runtime.cluster.deploy import build

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "ray_serve.yaml"


def test_the_example_config_builds() -> None:
    [entry] = yaml.safe_load(CONFIG.read_text())["applications"]
    assert entry["import_path"] == "aural.runtime.cluster.deploy:build"
    assert isinstance(build(entry["args"]), Application)


def test_an_unknown_argument_is_named() -> None:
    with pytest.raises(ValueError, match="unknown Aural application arguments: replica"):
        build({"model": "tiny", "replica": 2})
