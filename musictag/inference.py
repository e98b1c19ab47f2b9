"""Tagging: audio file -> windows -> batched backend calls -> one score per label.

A track's score is the mean of its windows' sigmoid outputs (the paper's rule); the card says how
the windows are placed. The library reports progress through a callback and never prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from . import audio
from .hub import local_weights
from .registry import DEFAULT_MODEL, ModelCard, get_card
from .weights import read_weights

#: Called with the number of windows just scored.
ProgressCallback = Callable[[int], None]


class Backend(Protocol):
    name: str

    def predict(self, windows: np.ndarray) -> np.ndarray: ...

    def embed(self, windows: np.ndarray) -> np.ndarray: ...


@dataclass
class TagResult:
    path: str
    labels: list[str]
    scores: np.ndarray  # (n_labels,) mean of window sigmoids
    window_scores: np.ndarray  # (n_windows, n_labels)
    duration_s: float  # audio actually decoded, at the model rate
    window_s: float = field(default=0.0)

    @property
    def n_windows(self) -> int:
        return len(self.window_scores)

    def select(self, *, top_k: int | None = 5,
               thresholds: float | dict[str, float] | None = None) -> list[tuple[str, float]]:
        """Tags by falling score: those at or over their threshold, then at most ``top_k``."""
        order = np.argsort(-self.scores, kind="stable")
        chosen = []
        for index in order:
            label, score = self.labels[index], float(self.scores[index])
            if thresholds is not None:
                limit = thresholds if isinstance(thresholds, float) else thresholds.get(label)
                if limit is None or score < limit:
                    continue
            chosen.append((label, score))
        return chosen if top_k is None else chosen[:top_k]

    def score_dict(self) -> dict[str, float]:
        return {label: float(score) for label, score in zip(self.labels, self.scores)}


def batched(windows: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for window in windows:
        batch.append(window)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


class Tagger:
    """A loaded model and the preprocessing its card prescribes."""

    def __init__(self, card: ModelCard, backend: Backend, *, batch_size: int = 16):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.card = card
        self.backend = backend
        self.batch_size = batch_size

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Sigmoid scores ``(batch, n_labels)`` for float32 windows ``(batch, window_samples)``."""
        if windows.ndim != 2 or windows.shape[1] != self.card.window_samples:
            raise ValueError(f"windows must have shape (batch, {self.card.window_samples}), "
                             f"got {windows.shape}")
        return self.backend.predict(windows)

    def windows(self, path: str | os.PathLike) -> Iterator[np.ndarray]:
        """The card's windows of a file, decoded and resampled block by block."""
        rate = self.card.sample_rate_hz
        info, blocks = audio.stream_mono(path, sample_rate_hz=rate)
        expected = None if info.n_frames is None else int(info.n_frames * rate /
                                                          info.sample_rate_hz)
        return audio.cut_windows(blocks, window_samples=self.card.window_samples,
                                 rule=self.card.window_rule, total_samples=expected,
                                 sample_rate_hz=rate, path=path)

    def tag(self, path: str | os.PathLike, *,
            on_progress: ProgressCallback | None = None) -> TagResult:
        """Tag one file; raises :class:`musictag.audio.AudioError` for a file that can't be read."""
        window_scores = []
        n_samples = 0
        for batch in batched(self.windows(path), self.batch_size):
            window_scores.append(self.predict(batch))
            n_samples += batch.size
            if on_progress:
                on_progress(len(batch))
        scores = np.concatenate(window_scores)
        rate = self.card.sample_rate_hz
        return TagResult(path=str(path), labels=self.labels, scores=scores.mean(axis=0),
                         window_scores=scores, duration_s=n_samples / rate,
                         window_s=self.card.window_samples / rate)

    def embed(self, path: str | os.PathLike) -> np.ndarray:
        """Penultimate-layer vectors ``(n_windows, embedding_size)`` of a file's windows.

        For similarity search (:mod:`musictag.library.embed`); raises
        :class:`musictag.audio.AudioError` like :meth:`tag`.
        """
        return np.concatenate([self.backend.embed(batch)
                               for batch in batched(self.windows(path), self.batch_size)])


def make_backend(card: ModelCard, weights_path: str | os.PathLike, *, backend: str = "torch",
                 device: str = "auto", precision: str = "fp32") -> Backend:
    if backend == "torch":
        from .backends.torch_backend import TorchBackend

        return TorchBackend(card, weights_path, device=device, precision=precision)
    raise ValueError(f"unknown backend {backend!r}")


def load_tagger(name: str | None = None, *, weights: str | os.PathLike | None = None,
                device: str = "auto", batch_size: int = 16, backend: str = "torch",
                precision: str = "fp32") -> Tagger:
    """A ready :class:`Tagger` for a card name (default model when None) or a weights file.

    ``weights`` alone uses the card stored inside the file; with ``name`` too, the named card's
    preprocessing is applied to the given weights.
    """
    if weights is not None and name is None:
        _, stored = read_weights(weights)
        if stored is None:
            raise ValueError(f"{weights}: holds no model card; name the card with --model")
        card = ModelCard.from_dict(stored, home=Path(weights).resolve().parent)
    else:
        card = get_card(name or DEFAULT_MODEL)
    weights_path = weights if weights is not None else local_weights(card)
    return Tagger(card, make_backend(card, weights_path, backend=backend, device=device,
                                     precision=precision), batch_size=batch_size)
