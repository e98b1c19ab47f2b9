"""Held-out agreement between student and teachers, on whole groups the student never trained on.

Per track, both scores are means over the same evenly spaced windows. The teachers' top-5 tags of
a track are its positives; macro ROC-AUC asks whether the student ranks each tag higher on the
tracks where the teachers put it in their top 5, and the top-5 overlap counts shared tags.
Both come with 95 % bootstrap intervals over the tracks (:mod:`musictag.distill.bootstrap`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ..audio import evenly_spaced_starts
from ..errors import RunError
from ..fileio import atomic_path
from ..inference import Tagger
from .bootstrap import interval, macro_roc_auc, mean_overlap, resample_indices
from .corpus import Corpus, CorpusTrack, tracks_as_dicts
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


def cached_validation_set(corpus: Corpus, tracks: list[CorpusTrack], ensemble: TeacherEnsemble,
                          *, sample_rate_hz: int, student_window: int, windows_per_track: int,
                          cache_dir: str | os.PathLike) -> ValidationSet:
    """:func:`build_validation_set`, stored in ``cache_dir`` under a name made of everything
    that shaped it (teachers, tracks, rate, window), so that changing any of them relabels."""
    key = json.dumps({"teachers": ensemble.describe(), "tracks": tracks_as_dicts(tracks),
                      "sample_rate_hz": sample_rate_hz, "student_window": student_window,
                      "windows_per_track": windows_per_track}, sort_keys=True)
    path = Path(cache_dir) / f"agreement-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        return ValidationSet.load(path)
    windows = build_validation_set(corpus, tracks, ensemble, sample_rate_hz=sample_rate_hz,
                                   student_window=student_window,
                                   windows_per_track=windows_per_track)
    windows.save(path)
    return windows


def tagger_track_scores(tagger: Tagger, windows: ValidationSet, labels: list[str]) -> np.ndarray:
    """A model's per-track scores on a labelled window set, columns in ``labels`` order."""
    missing = [label for label in labels if label not in tagger.labels]
    if missing:
        raise RunError(f"model {tagger.card.name!r} has no output for {', '.join(missing[:5])}")
    columns = [tagger.labels.index(label) for label in labels]
    scores = np.concatenate([tagger.predict(windows.inputs[i:i + 32].astype(np.float32))
                             for i in range(0, len(windows.inputs), 32)])
    return track_means(scores[:, columns], windows.track_of_window)


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
    indices = resample_indices(len(student))
    return {
        "macro_roc_auc": float(np.mean(aucs)) if aucs else None,  # JSON has no NaN
        "macro_roc_auc_ci95": interval(macro_roc_auc(student, positives, indices)),
        "tags_scored": len(aucs),
        "mean_top5_overlap": float(overlap.mean()),
        "mean_top5_overlap_ci95": interval(mean_overlap(overlap, indices)),
        "tracks": len(student),
        "per_tag": per_tag,
    }


def paired_difference(first: np.ndarray, second: np.ndarray, teacher: np.ndarray) -> dict:
    """``second`` minus ``first`` in both figures, with intervals from the same resampled tracks.

    Pairing matters: the two students meet the same hard tracks in every resample, so the
    interval of the difference is far narrower than the two separate intervals suggest.
    """
    positives = top_k_mask(teacher)
    whole = np.arange(len(teacher))[None, :]
    indices = resample_indices(len(teacher))
    result = {}
    for key, measure in (("macro_roc_auc", lambda s, rows: macro_roc_auc(s, positives, rows)),
                         ("mean_top5_overlap", lambda s, rows: mean_overlap(
                             (top_k_mask(s) & positives).sum(axis=1), rows))):
        point = float(measure(second, whole)[0] - measure(first, whole)[0])
        result[key] = {"difference": None if np.isnan(point) else round(point, 4),
                       "ci95": interval(measure(second, indices) - measure(first, indices))}
    return result
