"""Splitting a library between the N jobs of a cluster array, and joining their results.

Every job lists the same files, sorts them the same way and keeps every N-th one starting at its
own K, so the N shards cover the library exactly once without the jobs talking to each other.
Taking every N-th file (rather than N contiguous blocks) spreads long albums and slow folders
evenly over the jobs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import RunError
from .runlog import is_failure, latest_records

P = TypeVar("P", str, Path)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N, as SLURM's ``--array=1-N`` numbers its tasks) -> ``(K, N)``."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise RunError(f"shard {text!r} is not K/N (for example 3/8)") from None
    if not 1 <= k <= n:
        raise RunError(f"shard {text!r}: K must be between 1 and N")
    return k, n


def select_shard(files: Iterable[P], k: int, n: int) -> list[P]:
    """Shard ``k`` of ``n`` of the files, sorted by path so every job sees the same order."""
    if not 1 <= k <= n:
        raise RunError(f"shard {k}/{n}: K must be between 1 and N")
    ordered = sorted(set(files), key=str)
    return ordered[k - 1::n]


def merge_shards(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """One record per file from any number of result logs, sorted by path.

    A file in several logs (a shard rerun, a retried failure) keeps the record written last,
    the logs being read in the order given. Raises ``ValueError`` when the logs hold results of
    more than one model: their scores are not comparable, and the merged file would mix them
    without a word.
    """
    latest: dict[str, dict[str, Any]] = {}
    made_by: dict[str, str] = {}  # model -> the first log holding its results
    for path in paths:
        for name, record in latest_records([path]).items():
            latest[name] = record
            if not is_failure(record) and "model" in record:
                made_by.setdefault(str(record["model"]), str(path))
    if len(made_by) > 1:
        raise RunError("the logs hold results of different models: " + ", ".join(
            f"{model} ({path})" for model, path in sorted(made_by.items())))
    return [latest[path] for path in sorted(latest)]


def count_failures(records: Iterable[dict[str, Any]]) -> int:
    return sum(is_failure(record) for record in records)
