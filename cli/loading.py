"""Loading `aural serve`'s model: a progress display on a terminal, quiet in a log; a failure in one line.

On a terminal a status bar counts the seconds of the whole load, under which the hub's download bars and
transformers' weight bars show their own progress, and log lines are written above the bars. Elsewhere (a log
file, a collector) those bars are switched off: the "model loaded" log line says when the model is ready.
The libraries' own log handlers are removed, so that each of their records goes out once, in the runtime's format.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import torch
import transformers.utils.logging
from huggingface_hub.utils.tqdm import disable_progress_bars
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from aural.runtime.engine.qwen2_audio.engine import TransformersEngine

from .checks import fail

REFRESH = 0.5
"""Seconds between two updates of the status bar."""


def load_engine(args: argparse.Namespace, stream: TextIO) -> TransformersEngine:
    """The engine of parsed `aural serve` options, loaded with a progress display on `stream` if it is a terminal.

    Raises:
        SystemExit: status 1 after one line: the device has no room for the model, or a checkpoint's file cannot
            be fetched or read.
    """
    for name in ("transformers", "huggingface_hub"):  # they log to stderr by themselves, and then again through ours
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            library.removeHandler(handler)
        library.propagate = True
    terminal = stream.isatty()
    if not terminal:  # on a terminal they stay as the libraries' own settings have them
        disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    try:
        with progress(f"loading {args.model}", stream, enabled=terminal):
            return TransformersEngine.load(
                args.model,
                device=args.device,
                dtype=args.dtype,
                kv_budget=args.kv_budget,
                on_full=args.on_full,
                idle_offload=args.idle_offload,
                prefill_chunk=args.prefill_chunk,
                cuda_graphs=not args.no_cuda_graphs,
            )
    except torch.OutOfMemoryError:
        fail(
            f"--model {args.model} does not fit in the device's memory with the KV cache: try a smaller --kv-budget, "
            "--dtype bfloat16, or a larger device (Qwen2-Audio-7B needs about 17 GB in bfloat16)",
            status=1,
        )
    except OSError as exc:  # transformers' way of saying a checkpoint's file cannot be fetched or read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"--model {args.model}: {first}", status=1)


@contextmanager
def progress(description: str, stream: TextIO, *, enabled: bool) -> Iterator[None]:
    """A status bar with the seconds spent, redrawn every `REFRESH` seconds while the block runs (nothing if not
    `enabled`); the standard library's log records are written above the bars meanwhile."""
    if not enabled:
        yield
        return
    done = threading.Event()
    with logging_redirect_tqdm(), tqdm(desc=description, bar_format="{desc}: {elapsed}", file=stream) as bar:

        def tick() -> None:
            while not done.wait(REFRESH):
                bar.refresh()

        ticker = threading.Thread(target=tick, name="load-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
