"""Evaluation on a labelled split; a clip's score is the mean over its windows, as in ``tag``.

Windows are cut from the preprocessing cache by :func:`musictag.audio.cut_windows` under the card's
averaging rule and scored by :meth:`musictag.inference.Tagger.predict`, so evaluation, validation
during training and ``musictag tag`` share one definition of a clip's score. Windows of several
clips share a batch, which keeps a GPU busy on 29 s MTAT clips (11 windows each).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio import cut_windows
from .data import Clip, LabelledDataset
from .data.cache import AudioCache
from .errors import RunError
from .inference import Tagger
from .metrics import TaggingMetrics, tagging_metrics

log = logging.getLogger(__name__)

#: Called with (clips scored, clips in all).
ClipProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class WindowScores:
    scores: np.ndarray  # (n_windows, n_labels) sigmoid outputs
    owner: np.ndarray  # (n_windows,) index of each window's clip

    def clip_means(self, n_clips: int) -> np.ndarray:
        """``(n_clips, n_labels)``: each clip's mean over its windows."""
        sums = np.zeros((n_clips, self.scores.shape[1]), np.float64)
        np.add.at(sums, self.owner, self.scores)
        counts = np.bincount(self.owner, minlength=n_clips)[:, None]
        return (sums / np.maximum(counts, 1)).astype(np.float32)


def _clip_windows(tagger: Tagger, cache: AudioCache,
                  clips: list[Clip]) -> Iterator[tuple[int, np.ndarray]]:
    card = tagger.card
    for index, clip in enumerate(clips):
        samples = np.asarray(cache.samples(clip.path), dtype=np.float32)
        for window in cut_windows([samples], window_samples=card.window_samples,
                                  rule=card.window_rule, total_samples=len(samples),
                                  sample_rate_hz=card.sample_rate_hz,
                                  path=cache.audio_root / clip.path):
            yield index, window


def score_windows(tagger: Tagger, cache: AudioCache, clips: list[Clip], *,
                  on_progress: ClipProgress | None = None) -> WindowScores:
    """Every window of every clip, scored in batches of ``tagger.batch_size``."""
    scores, owners = [], []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        scores.append(tagger.predict(np.stack([window for _, window in pending])))
        owners.extend(owner for owner, _ in pending)
        if on_progress:
            on_progress(pending[-1][0] + 1, len(clips))
        pending.clear()

    for item in _clip_windows(tagger, cache, clips):
        pending.append(item)
        if len(pending) == tagger.batch_size:
            flush()
    if pending:
        flush()
    if not scores:
        return WindowScores(np.zeros((0, len(tagger.labels)), np.float32), np.zeros(0, int))
    return WindowScores(np.concatenate(scores), np.asarray(owners))


def align_labels(card_labels: list[str], dataset_tags: list[str]) -> tuple[list[str], list[int],
                                                                         list[int]]:
    """The labels both know, in the card's order, with their columns in each."""
    common = [label for label in card_labels if label in dataset_tags]
    if not common:
        raise RunError("the model's labels and the dataset's tags have nothing in common")
    ignored = [label for label in card_labels if label not in dataset_tags]
    if ignored:
        log.warning("%d label(s) of the model are not tags of the dataset and are not scored: %s",
                    len(ignored), ", ".join(ignored[:10]))
    return (common, [card_labels.index(label) for label in common],
            [dataset_tags.index(label) for label in common])


def evaluate(tagger: Tagger, dataset: LabelledDataset, cache: AudioCache, *, split: str = "test",
             on_progress: ClipProgress | None = None) -> TaggingMetrics:
    """Macro ROC-AUC / PR-AUC and the per-tag table of ``tagger`` on ``split``."""
    clips = dataset.clips(split)
    if not clips:
        raise RunError(f"the {split} split holds no clips")
    labels, card_columns, dataset_columns = align_labels(tagger.labels, dataset.tags)
    clip_scores = score_windows(tagger, cache, clips, on_progress=on_progress).clip_means(
        len(clips))
    return tagging_metrics(dataset.targets(clips)[:, dataset_columns],
                           clip_scores[:, card_columns], labels)
