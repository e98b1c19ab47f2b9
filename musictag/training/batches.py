"""What each step trains on: random segments of the cached clips, planned per epoch from the seed.

An epoch's plan (which clip, from which sample) is a pure function of the seed and the epoch
number, so a resumed run redraws exactly the batches the interrupted one would have drawn, and a
distributed run splits one plan between its processes instead of drawing one per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..data.cache import AudioCache


def epoch_plan(lengths: np.ndarray, *, window_samples: int, segments_per_clip: int, seed: int,
               epoch: int) -> np.ndarray:
    """``(n_segments, 2)`` rows of (clip index, start sample) in training order."""
    rng = np.random.default_rng([seed, epoch])
    clips = rng.permutation(np.repeat(np.arange(len(lengths)), segments_per_clip))
    spans = np.maximum(lengths[clips] - window_samples, 0) + 1
    starts = np.floor(rng.random(len(clips)) * spans).astype(np.int64)
    return np.stack([clips, starts], axis=1)


def shard(plan: np.ndarray, *, rank: int, world_size: int) -> np.ndarray:
    """This process's share; the plan wraps around so that every process gets as many rows."""
    if world_size == 1:
        return plan
    padded = -(-len(plan) // world_size) * world_size
    return plan[np.arange(padded) % len(plan)][rank::world_size]


def batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive batches; a last batch of one is dropped (batch normalisation needs two)."""
    bounds = [(start, min(start + batch_size, n_rows)) for start in range(0, n_rows, batch_size)]
    return [(a, b) for a, b in bounds if b - a > 1]


class SegmentLoader:
    """Reads the planned segments from the cache, one batch ahead on a background thread."""

    def __init__(self, cache: AudioCache, paths: list[str], targets: np.ndarray,
                 window_samples: int):
        self.cache = cache
        self.paths = paths
        self.targets = targets
        self.window_samples = window_samples

    def load(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        segments = np.stack([self.cache.segment(self.paths[clip], int(start), self.window_samples)
                             for clip, start in rows])
        return segments, self.targets[rows[:, 0]]

    def batches(self, rows: np.ndarray, bounds: list[tuple[int, int]]
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not bounds:
            return
        with ThreadPoolExecutor(max_workers=1) as reader:
            upcoming = reader.submit(self.load, rows[bounds[0][0]:bounds[0][1]])
            for following in [*bounds[1:], None]:
                current = upcoming.result()
                if following is not None:
                    upcoming = reader.submit(self.load, rows[following[0]:following[1]])
                yield current
