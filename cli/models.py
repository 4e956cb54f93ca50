"""`aural serve --model`: a preset, a local folder or a hub id, told apart and checked before the model loads.

A hub id is looked up on the hub with a short timeout: without a network, transformers would otherwise retry
every file of the checkpoint five times with backoff (minutes of `Retrying` lines) before it fails. When the hub
cannot be reached but the checkpoint is in the local cache, the load goes on offline from the cache.
`HF_HUB_OFFLINE=1` skips the lookup: the checkpoint must then be in the cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import structlog
from huggingface_hub import HfApi, constants, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from aural.runtime.engine.qwen2_audio.settings import PRESETS

from .checks import fail

HUB_TIMEOUT = 5.0
"""Seconds the hub may take to answer the lookup."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

log = structlog.get_logger(__name__)


def check_model(model: str, *, timeout: float = HUB_TIMEOUT) -> None:
    """Check that `--model` names something that can load.

    Raises:
        SystemExit: status 2 after one line: a folder that does not exist or holds no checkpoint, a name that is
            neither a preset nor a hub id, a hub id the hub does not know or that cannot be fetched.
    """
    if model in PRESETS:
        return
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            fail(f"--model {model} is a file: give a checkpoint's folder, a hub id or a preset")
        if not (path / "config.json").is_file():
            fail(f"--model {model}: no config.json in this folder, so it holds no checkpoint")
        return
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        fail(f"--model {model}: no such folder")
    if not _HUB_ID.fullmatch(model):
        fail(f"--model {model} is neither a preset ({', '.join(PRESETS)}), a local folder nor a hub id (org/name)")
    _check_hub(model, timeout)


def _check_hub(model: str, timeout: float) -> None:
    cached = isinstance(try_to_load_from_cache(model, "config.json"), str)
    if constants.is_offline_mode():
        if not cached:
            fail(
                f"--model {model} is not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: "
                "fetch it once with a network, or give a local folder"
            )
        return
    try:
        HfApi().model_info(model, timeout=timeout)
    except GatedRepoError:
        fail(f"--model {model} is gated: accept its terms on the hub, then log in (hf auth login)")
    except RepositoryNotFoundError:
        fail(f"--model {model}: no such model on the hub (a private one needs hf auth login)")
    except HfHubHTTPError as exc:
        fail(f"--model {model}: the hub answered {exc.response.status_code}")
    except Exception as exc:  # the hub's transport errors (DNS, refused, timeout, proxy): the network's problem
        if not cached:
            fail(
                f"--model {model}: cannot reach the hub at {constants.ENDPOINT} ({exc or type(exc).__name__}): "
                "check the network, or give a local folder (HF_HUB_OFFLINE=1 loads from the cache)"
            )
        log.warning("the hub cannot be reached: loading the cached checkpoint", model=model, error=str(exc))
        os.environ["HF_HUB_OFFLINE"] = "1"  # for the libraries that read it when they are imported
        constants.HF_HUB_OFFLINE = True
