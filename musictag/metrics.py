"""Tagging metrics: macro ROC-AUC and macro PR-AUC (average precision) over tags, per-tag table.

scikit-learn computes the areas, so the numbers are the ones the literature reports. A tag needs at
least one positive and one negative clip to have an area: tags without are listed as undefined
and left out of both macro averages (scikit-learn would raise for ROC-AUC and silently count 0 for
average precision, which would make a small test set look worse than it is).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class TagScore:
    tag: str
    positives: int
    roc_auc: float | None  # None: the tag has no positive or no negative clip
    pr_auc: float | None


@dataclass(frozen=True)
class TaggingMetrics:
    roc_auc: float | None  # macro average over the tags that have one
    pr_auc: float | None
    n_clips: int
    per_tag: list[TagScore]

    @property
    def undefined_tags(self) -> list[str]:
        return [score.tag for score in self.per_tag if score.roc_auc is None]

    def to_dict(self) -> dict:
        return {"roc_auc": self.roc_auc, "pr_auc": self.pr_auc, "n_clips": self.n_clips,
                "n_tags_scored": len(self.per_tag) - len(self.undefined_tags),
                "undefined_tags": self.undefined_tags,
                "per_tag": [asdict(score) for score in self.per_tag]}


def tagging_metrics(targets: np.ndarray, scores: np.ndarray, labels: list[str]) -> TaggingMetrics:
    """``targets`` 0/1 and ``scores`` (any monotone score), both ``(n_clips, n_tags)``."""
    targets = np.asarray(targets)
    scores = np.asarray(scores, dtype=np.float64)
    if targets.shape != scores.shape or targets.ndim != 2 or targets.shape[1] != len(labels):
        raise ValueError(f"targets {targets.shape}, scores {scores.shape} and {len(labels)} "
                         "labels do not match")
    per_tag = []
    for column, tag in enumerate(labels):
        truth = targets[:, column] > 0.5
        positives = int(truth.sum())
        if 0 < positives < len(truth):
            roc = float(roc_auc_score(truth, scores[:, column]))
            pr = float(average_precision_score(truth, scores[:, column]))
        else:
            roc = pr = None
        per_tag.append(TagScore(tag=tag, positives=positives, roc_auc=roc, pr_auc=pr))
    defined = [s for s in per_tag if s.roc_auc is not None]
    return TaggingMetrics(
        roc_auc=float(np.mean([s.roc_auc for s in defined])) if defined else None,
        pr_auc=float(np.mean([s.pr_auc for s in defined])) if defined else None,
        n_clips=len(targets), per_tag=per_tag)
