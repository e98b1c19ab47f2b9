"""Evidence for choosing and weighting teachers: how they agree, and whether they hear the obvious.

Two measures on a sample of corpus tracks (a 30 s excerpt from the middle of each, which every
teacher scores with its own rate, window and averaging rule):

- *agreement*: for each pair of teachers, the mean top-5 overlap of their track-level tags and
  the mean per-tag Spearman correlation of their scores across tracks;
- *plausibility*: where a group's content is plain from its source (a drum-kit package holds
  drums, a metal band's stems hold guitars), the ROC-AUC with which a teacher separates the
  tracks of groups expected to carry a tag from all the others, averaged over those tags.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import soxr
from sklearn.metrics import roc_auc_score

from ..audio import cut_windows
from ..inference import Tagger, batched
from .corpus import Corpus, CorpusTrack
from .validate import top_k_mask

EXCERPT_S = 30.0


def excerpt(corpus: Corpus, track: CorpusTrack, *, sample_rate_hz: int) -> np.ndarray:
    length = int(EXCERPT_S * sample_rate_hz)
    start = max(0, (track.n_samples - length) // 2)
    return corpus.segment(track, start, min(length, track.n_samples))


def track_scores(tagger: Tagger, excerpts: list[np.ndarray], *, sample_rate_hz: int,
                 labels: list[str]) -> np.ndarray:
    """``(n_tracks, n_labels)`` scores of one teacher, columns in ``labels`` order."""
    card = tagger.card
    columns = [tagger.labels.index(label) for label in labels]
    rows = []
    for samples in excerpts:
        audio = soxr.resample(samples, sample_rate_hz, card.sample_rate_hz, quality="HQ")
        windows = cut_windows([audio.astype(np.float32)], window_samples=card.window_samples,
                              rule=card.window_rule, total_samples=len(audio),
                              sample_rate_hz=card.sample_rate_hz)
        scores = np.concatenate([tagger.predict(b) for b in batched(windows, 8)])
        rows.append(scores.mean(axis=0)[columns])
    return np.stack(rows)


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, axis=0), axis=0).astype(np.float64)


def pairwise_agreement(scores: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for first, second in combinations(sorted(scores), 2):
        a, b = _ranks(scores[first]), _ranks(scores[second])
        a -= a.mean(axis=0)
        b -= b.mean(axis=0)
        denominator = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
        spearman = (a * b).sum(axis=0) / np.where(denominator > 0, denominator, np.nan)
        overlap = (top_k_mask(scores[first]) & top_k_mask(scores[second])).sum(axis=1)
        rows.append({"teachers": [first, second],
                     "mean_top5_overlap": round(float(overlap.mean()), 3),
                     "mean_tag_spearman": round(float(np.nanmean(spearman)), 3)})
    return rows


def plausibility(scores: np.ndarray, groups: list[str], expected: dict[str, list[str]],
                 labels: list[str]) -> dict:
    """Mean ROC-AUC over the expected tags of telling their groups' tracks from the rest."""
    tags = sorted({tag for group_tags in expected.values() for tag in group_tags})
    per_tag = {}
    for tag in tags:
        positive = np.array([tag in expected.get(group, []) for group in groups])
        if positive.any() and not positive.all():
            per_tag[tag] = round(float(roc_auc_score(positive, scores[:, labels.index(tag)])), 3)
    return {"mean_roc_auc": round(float(np.mean(list(per_tag.values()))), 4)
            if per_tag else None, "per_tag": per_tag}


def sample_tracks(tracks: list[CorpusTrack], per_group: int, seed: int = 0) -> list[CorpusTrack]:
    """Up to ``per_group`` tracks of every group, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    chosen = []
    for group in sorted({t.group for t in tracks}):
        members = [t for t in tracks if t.group == group]
        picks = rng.choice(len(members), size=min(per_group, len(members)), replace=False)
        chosen.extend(members[i] for i in sorted(picks))
    return chosen
