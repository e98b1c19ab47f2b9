"""Bootstrap intervals for the agreement figures, by resampling whole tracks.

A held-out set of a few dozen tracks decides a tag with one to five positives by one or two
tracks, so two checkpoints' macro ROC-AUCs can differ by 0.01 by chance alone. Resampling the
tracks with replacement (the same draws for every model compared, hence *paired*) says how far
a figure or a difference between two students can be trusted before a model is shipped on it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

#: Resamples per interval: the 2.5 and 97.5 percentiles settle to about 0.002 at this count.
RESAMPLES = 1000
LEVEL = 0.95


def resample_indices(n_tracks: int, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(resamples, n_tracks)`` track indices drawn with replacement, reproducibly."""
    return np.random.default_rng(seed).integers(0, n_tracks, size=(resamples, n_tracks))


def macro_roc_auc(student: np.ndarray, positives: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Macro ROC-AUC of each resample (rows of ``indices``), NaN where no tag can be scored.

    A tag counts in a resample when it drew both positive and negative tracks, as on the whole
    set; AUC is the Mann-Whitney statistic on tie-averaged ranks, which equals sklearn's.
    """
    total = np.zeros(len(indices))
    scored = np.zeros(len(indices))
    for tag in range(student.shape[1]):
        labels = positives[indices, tag]
        n_positive = labels.sum(axis=1)
        n_negative = labels.shape[1] - n_positive
        valid = (n_positive > 0) & (n_negative > 0)
        if not valid.any():
            continue
        ranks = rankdata(student[indices, tag], axis=1)
        rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
        total += np.where(valid, auc, 0.0)
        scored += valid
    with np.errstate(invalid="ignore"):
        return np.where(scored > 0, total / np.maximum(scored, 1), np.nan)


def mean_overlap(overlap_per_track: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Mean top-5 overlap of each resample."""
    return overlap_per_track[indices].mean(axis=1)


def interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The central ``level`` percentile interval, rounded for reports (None if undefined)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [round(float(low), 4), round(float(high), 4)]
