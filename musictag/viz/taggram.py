"""Taggrams: how a track's tag scores change from window to window along its time axis.

The scores are the tagger's own per-window outputs (``TagResult.window_scores``); this module
adds where each window lies in the track. Windows follow the card's rule
(:mod:`musictag.audio`): back-to-back from the start, the last one possibly aligned to the end of
the track, or spread evenly; the track's length is the one its header declares, which is what
the tagger itself places evenly spaced windows by. A header without a length, or one that
disagrees with the windows the tagger cut, leaves back-to-back spans as the honest approximation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import audio
from ..inference import Tagger


@dataclass
class Taggram:
    path: str
    model: str
    labels: list[str]  # the drawn tags, highest track score first
    spans_s: np.ndarray  # (n_windows, 2): start and end of each window in the track, seconds
    scores: np.ndarray  # (n_windows, n_tags) sigmoid scores, columns in ``labels`` order
    window_s: float
    duration_s: float  # the track's length (a remainder under half a window is not scored)

    @property
    def n_windows(self) -> int:
        return len(self.scores)

    def record(self) -> dict[str, Any]:
        """The JSON form: one list of per-window scores per tag, beside the windows' times."""
        return {
            "path": self.path,
            "model": self.model,
            "duration_s": round(self.duration_s, 3),
            "window_s": round(self.window_s, 6),
            "n_windows": self.n_windows,
            "start_s": [round(float(s), 3) for s in self.spans_s[:, 0]],
            "end_s": [round(float(s), 3) for s in self.spans_s[:, 1]],
            "scores": {label: [round(float(v), 6) for v in self.scores[:, i]]
                       for i, label in enumerate(self.labels)},
        }


def rule_spans(total_samples: int, *, window_samples: int, rule: audio.WindowRule) -> np.ndarray:
    """``(n_windows, 2)`` start/end samples of the windows ``rule`` cuts from a track this long."""
    if total_samples < window_samples:  # one zero-padded window holds the whole clip
        return np.array([[0, total_samples]])
    starts = audio.window_starts(total_samples, window_samples=window_samples, rule=rule)
    return np.array([[start, start + window_samples] for start in starts])


def window_spans(path: str | os.PathLike, n_windows: int, *, window_samples: int,
                 sample_rate_hz: int, rule: audio.WindowRule) -> tuple[np.ndarray, int]:
    """Start/end samples (model rate) of the windows the tagger scored, and the track's length."""
    info = audio.probe(path)
    if info.n_frames:
        total = int(info.n_frames * sample_rate_hz / info.sample_rate_hz)
        spans = rule_spans(total, window_samples=window_samples, rule=rule)
        if len(spans) == n_windows:
            return spans, total
    starts = np.arange(n_windows) * window_samples
    return np.stack([starts, starts + window_samples], axis=1), n_windows * window_samples


def taggram(tagger: Tagger, path: str | os.PathLike, *, top: int = 10) -> Taggram:
    """Tag ``path`` and keep the per-window scores of its ``top`` tags (by track score)."""
    if top < 1:
        raise ValueError("top must be at least 1")
    result = tagger.tag(path)
    card = tagger.card
    chosen = np.argsort(-result.scores, kind="stable")[:top]
    spans, total = window_spans(path, result.n_windows, window_samples=card.window_samples,
                                sample_rate_hz=card.sample_rate_hz, rule=card.window_rule)
    rate = card.sample_rate_hz
    return Taggram(path=str(path), model=card.name, labels=[result.labels[i] for i in chosen],
                   spans_s=spans / rate, scores=result.window_scores[:, chosen],
                   window_s=card.window_samples / rate, duration_s=total / rate)
