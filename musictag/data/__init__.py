"""Labelled datasets for training and evaluation: tags, clips and the split each clip belongs to.

Every reader (MagnaTagATune, a user's folder with a labels CSV) produces a :class:`LabelledDataset`:
the tag vocabulary in output order and, per split, the clips with the indices of their tags. Readers
never decode audio; the preprocessing cache (:mod:`musictag.data.cache`) does that once, and
:meth:`LabelledDataset.keep_decoded` then drops the clips that failed or are too short.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import RunError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
DATASET_KINDS = ("mtat", "folder")


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the dataset's audio root, "/"-separated
    tags: tuple[int, ...]  # indices into LabelledDataset.tags


@dataclass(frozen=True)
class LabelledDataset:
    kind: str
    audio_root: Path
    tags: list[str]
    splits: dict[str, list[Clip]]
    #: Decoded clips shorter than this are left out (MTAT's 29.1 s rule; 1 s for a folder).
    min_duration_s: float

    def clips(self, split: str) -> list[Clip]:
        if split == "all":
            return [clip for name in SPLITS for clip in self.splits.get(name, [])]
        if split not in SPLITS:
            raise RunError(f"unknown split {split!r}; choose {', '.join(SPLITS)} or all")
        return self.splits.get(split, [])

    def targets(self, clips: list[Clip]) -> np.ndarray:
        """``(n_clips, n_tags)`` float32 matrix of 0/1 labels."""
        matrix = np.zeros((len(clips), len(self.tags)), np.float32)
        for row, clip in enumerate(clips):
            matrix[row, list(clip.tags)] = 1.0
        return matrix

    def keep_decoded(self, lengths: dict[str, int], sample_rate_hz: int) -> LabelledDataset:
        """Only the clips the cache decoded, at least :attr:`min_duration_s` long."""
        min_samples = int(round(self.min_duration_s * sample_rate_hz))
        splits = {}
        for name, clips in self.splits.items():
            kept = [clip for clip in clips if lengths.get(clip.path, -1) >= min_samples]
            short = sum(1 for clip in clips if 0 <= lengths.get(clip.path, -1) < min_samples)
            if short:
                log.warning("%s split: left out %d clip(s) shorter than %.1f s", name, short,
                            self.min_duration_s)
            splits[name] = kept
        return replace(self, splits=splits)

    def describe(self) -> dict[str, int]:
        return {name: len(clips) for name, clips in self.splits.items()}


def open_dataset(kind: str, data_dir: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                 n_tags: int = 0) -> LabelledDataset:
    """The ``mtat`` or ``folder`` dataset under ``data_dir``; ``n_tags`` 0 means the reader's own
    default (50 for MTAT, every tag for a folder)."""
    if kind == "mtat":
        from .mtat import N_TAGS, load_mtat

        if labels:
            raise RunError("labels are for the folder dataset; MTAT's labels are its "
                           "annotations_final.csv")
        return load_mtat(data_dir, n_tags=n_tags or N_TAGS)
    if kind == "folder":
        from .folder import load_folder

        if not labels:
            raise RunError("the folder dataset needs labels: a labels.csv (columns path, tags)")
        return load_folder(data_dir, labels, n_tags=n_tags or None)
    raise RunError(f"unknown dataset {kind!r}; choose {', '.join(DATASET_KINDS)}")
