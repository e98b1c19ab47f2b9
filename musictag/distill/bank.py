"""The teacher-label bank: every augmented segment is labelled once and trained on many times.

Labelling a segment with three teachers costs more than a student step on it, so the run
labels a few new segments per step and fills the rest of each batch from the bank. An entry
keeps the teachers' scores and the seed that rebuilds its segment from the decoded corpus
(:meth:`SegmentSampler.draw` is a pure function of the seed), never the audio: 200 bytes a
segment instead of 130 kB. The bank is bound to what makes a seed rebuild the same audio (the
training tracks, the augmentation, the segment length and the teachers) by a fingerprint, and
is written atomically beside the checkpoint, which records how many entries it covers.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path


def bank_fingerprint(recipe: dict[str, Any]) -> str:
    """A digest of everything a seed's segment and its labels depend on."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


class LabelBank:
    """Seeds ``(n,)`` and teacher scores ``(n, n_labels)``, growing by whole labelled batches."""

    def __init__(self, n_labels: int, fingerprint: str):
        self.n_labels, self.fingerprint = n_labels, fingerprint
        self.seeds = np.zeros(0, np.int64)
        self.targets = np.zeros((0, n_labels), np.float32)

    def __len__(self) -> int:
        return len(self.seeds)

    def add(self, seeds: np.ndarray, targets: np.ndarray) -> None:
        if targets.shape != (len(seeds), self.n_labels):
            raise ValueError(f"{len(seeds)} seeds need targets of shape "
                             f"({len(seeds)}, {self.n_labels}), not {targets.shape}")
        self.seeds = np.concatenate([self.seeds, seeds.astype(np.int64)])
        self.targets = np.concatenate([self.targets, targets.astype(np.float32)])

    def truncate(self, size: int) -> None:
        """Keep the first ``size`` entries: those the checkpoint's generator state follows."""
        if size > len(self):
            raise ValueError(f"the bank holds {len(self)} entries; the checkpoint needs {size}")
        self.seeds, self.targets = self.seeds[:size], self.targets[:size]

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, seeds=self.seeds, targets=self.targets,
                     fingerprint=np.array(self.fingerprint))

    @classmethod
    def load(cls, path: str | os.PathLike, *, n_labels: int, fingerprint: str) -> LabelBank:
        """The bank at ``path``; an error when it was made for other tracks or teachers."""
        with np.load(Path(path)) as stored:
            if str(stored["fingerprint"]) != fingerprint:
                raise ValueError(f"{path}: label bank made for other training tracks, "
                                 "augmentation or teachers than this run's")
            bank = cls(n_labels, fingerprint)
            bank.add(stored["seeds"], stored["targets"])
        return bank
