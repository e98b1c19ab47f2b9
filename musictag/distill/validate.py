"""Held-out agreement between student and teachers, on whole groups the student never trained on.

Per track, both scores are means over the same evenly spaced windows. The teachers' top-5 tags of
a track are its positives; macro ROC-AUC asks whether the student ranks each tag higher on the
tracks where the teachers put it in their top 5, and the top-5 overlap counts shared tags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ..audio import evenly_spaced_starts
from ..fileio import atomic_path
from .corpus import Corpus, CorpusTrack
from .teachers import TeacherEnsemble, centre

TOP_K = 5


@dataclass
class ValidationSet:
    inputs: np.ndarray  # (n_windows, student_window) float16 student inputs
    track_of_window: np.ndarray  # (n_windows,) index into paths
    teacher_scores: np.ndarray  # (n_windows, n_labels)
    paths: list[str]

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, inputs=self.inputs, track_of_window=self.track_of_window,
                     teacher_scores=self.teacher_scores, paths=np.array(self.paths))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ValidationSet:
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(data["inputs"], data["track_of_window"], data["teacher_scores"],
                       [str(p) for p in data["paths"]])


def build_validation_set(corpus: Corpus, tracks: list[CorpusTrack], ensemble: TeacherEnsemble,
                         *, sample_rate_hz: int, student_window: int,
                         windows_per_track: int) -> ValidationSet:
    span = int(np.ceil(ensemble.span_s * sample_rate_hz))
    inputs, owners, scores = [], [], []
    for index, track in enumerate(tracks):
        starts = evenly_spaced_starts(track.n_samples, window_samples=span,
                                      n_windows=windows_per_track)
        segments = np.stack([corpus.segment(track, start, span) for start in starts])
        scores.append(ensemble.score(segments, sample_rate_hz=sample_rate_hz))
        inputs.extend(centre(segment, student_window).astype(np.float16) for segment in segments)
        owners.extend([index] * len(segments))
    return ValidationSet(np.stack(inputs), np.array(owners), np.concatenate(scores),
                         [t.path for t in tracks])


def track_means(window_scores: np.ndarray, track_of_window: np.ndarray) -> np.ndarray:
    n_tracks = int(track_of_window.max()) + 1
    sums = np.zeros((n_tracks, window_scores.shape[1]))
    np.add.at(sums, track_of_window, window_scores)
    return sums / np.bincount(track_of_window, minlength=n_tracks)[:, None]


def top_k_mask(scores: np.ndarray, k: int = TOP_K) -> np.ndarray:
    mask = np.zeros(scores.shape, bool)
    np.put_along_axis(mask, np.argsort(-scores, axis=1)[:, :k], True, axis=1)
    return mask


def agreement(student: np.ndarray, teacher: np.ndarray, labels: list[str]) -> dict:
    """Macro ROC-AUC of student scores against the teachers' top-5, top-5 overlap, per tag."""
    positives = top_k_mask(teacher)
    per_tag = []
    for index, label in enumerate(labels):
        n_positive = int(positives[:, index].sum())
        auc = None
        if 0 < n_positive < len(positives):
            auc = float(roc_auc_score(positives[:, index], student[:, index]))
        per_tag.append({"tag": label, "positives": n_positive, "roc_auc": auc})
    aucs = [row["roc_auc"] for row in per_tag if row["roc_auc"] is not None]
    overlap = (top_k_mask(student) & positives).sum(axis=1)
    return {
        "macro_roc_auc": float(np.mean(aucs)) if aucs else None,  # JSON has no NaN
        "tags_scored": len(aucs),
        "mean_top5_overlap": float(overlap.mean()),
        "tracks": len(student),
        "per_tag": per_tag,
    }
