"""Resumable training state: model, optimiser, scheduler, random generators and counters.

A checkpoint is written to a temporary file and renamed, so ``kill -9`` at any moment leaves
either the previous checkpoint or the new one, never a torn file. Everything inside is tensors,
numbers, strings and containers of them, so it loads with ``torch.load(weights_only=True)``.
Random generators are saved too: a resumed run draws the same batches and dropout masks as an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .fileio import atomic_path


def rng_state(generator: np.random.Generator | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
    }
    if generator is not None:
        state["numpy"] = generator.bit_generator.state
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: np.random.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if generator is not None and "numpy" in state:
        generator.bit_generator.state = state["numpy"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DistributedDataParallel (or the module itself)."""
    return getattr(model, "module", model)


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any = None,
                    generator: np.random.Generator | None = None,
                    counters: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Atomically write everything a run needs to continue exactly where it was.

    ``extra`` holds further state dicts (an averaged copy of the weights, say) by name.
    """
    payload = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(generator),
        "counters": dict(counters or {}),
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    generator: np.random.Generator | None = None) -> dict[str, Any]:
    """Restore a :func:`save_checkpoint` file in place; returns its counters and ``extra``."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    restore_rng(payload["rng"], generator)
    return {**payload["counters"], "extra": payload.get("extra", {})}


@contextlib.contextmanager
def stop_signals() -> Iterator[dict[str, bool]]:
    """The first Ctrl-C/SIGTERM asks for a stop at the next safe point; a second one is
    immediate."""
    request = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        if request["stop"]:
            raise KeyboardInterrupt
        request["stop"] = True

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
