"""Measuring a faster path against fp32 on real tracks: the record ``--precision auto`` trusts.

Each track's first ``max_windows`` windows go through the exact fp32 path and through the faster
one; a track's score is the mean of its windows' scores, as tagging computes it. The measurement
(:class:`musictag.fastpath.PathCheck`) names the fp32 weights' digest and, for int8, the file's,
so it never vouches for other weights. Tracks should not be those an int8 file was calibrated on.
"""

from __future__ import annotations

import datetime
import itertools
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .audio import AudioError
from .errors import ModelError
from .fastpath import PathCheck, int8_file, onnx_file_digest, shipped_weights_digest
from .inference import load_tagger, resolve_card

#: Windows per track: ~32 s of each, enough for a track score, bounded time on long tracks.
MAX_WINDOWS = 12


def spread(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` of ``paths`` (sorted) spread evenly over them, so every folder of a corpus counts."""
    ordered = sorted(paths)
    if len(ordered) <= n:
        return ordered
    return [ordered[i] for i in np.linspace(0, len(ordered) - 1, n).round().astype(int)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(model: str | None, precision: str, tracks: Sequence[str | os.PathLike], *,
            max_windows: int = MAX_WINDOWS, command: str = "",
            on_track: Callable[[str], None] | None = None) -> PathCheck:
    """``precision`` (int8 or bf16) against fp32 on ``tracks``; unreadable tracks are skipped."""
    if precision not in ("int8", "bf16"):
        raise ModelError(f"only int8 and bf16 are measured against fp32, not {precision!r}")
    card = resolve_card(model, None)
    digest = shipped_weights_digest(card)
    if digest is None:
        raise ModelError(f"model {card.name!r}: its safetensors file is not beside its card or "
                         "stores no digest; nothing to tie a measurement to")
    exact = load_tagger(model, precision="fp32", backend="auto", device="cpu")
    fast = load_tagger(model, precision=precision, backend="auto", device="cpu")
    reference, other = [], []
    for path in tracks:
        try:
            windows = np.stack(list(itertools.islice(exact.windows(path), max_windows)))
        except (AudioError, ValueError):
            continue
        reference.append(exact.predict(windows).mean(axis=0))
        other.append(fast.predict(windows).mean(axis=0))
        if on_track:
            on_track(str(path))
    if not reference:
        raise ModelError("none of the tracks could be decoded")
    a, b = np.stack(reference).astype(np.float64), np.stack(other).astype(np.float64)
    gap = np.abs(a - b)
    k = min(5, a.shape[1])
    same = (np.sort(np.argsort(-a, axis=1)[:, :k], axis=1)
            == np.sort(np.argsort(-b, axis=1)[:, :k], axis=1)).all(axis=1)
    file = int8_file(card) if precision == "int8" else None
    relative = card.weights.get("int8", file.name) if file else None
    return PathCheck(
        precision=precision, n_tracks=len(a), top5_same=round(float(same.mean()), 4),
        max_track_diff=round(float(gap.max()), 5), mean_track_diff=round(float(gap.mean()), 6),
        weights_sha256=digest, file=relative,
        file_sha256=onnx_file_digest(file) if file else None,
        measured_on=f"{cpu_name()}, {datetime.date.today().isoformat()}", command=command)
