"""Tagging metrics against scikit-learn, and the explicit handling of tags without an area."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from musictag.evaluate import WindowScores, align_labels
from musictag.metrics import tagging_metrics

LABELS = [f"tag{i}" for i in range(6)]


def fixed_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    targets = (rng.random((40, 6)) < 0.3).astype(np.float32)
    targets[0] = 1  # every tag has a positive...
    targets[1] = 0  # ...and a negative
    scores = np.clip(0.4 * targets + rng.random((40, 6)) * 0.8, 0, 1)
    return targets, scores


def test_macro_and_per_tag_areas_equal_scikit_learn():
    targets, scores = fixed_inputs()
    metrics = tagging_metrics(targets, scores, LABELS)
    assert metrics.roc_auc == pytest.approx(roc_auc_score(targets, scores, average="macro"))
    assert metrics.pr_auc == pytest.approx(
        average_precision_score(targets, scores, average="macro"))
    for column, score in enumerate(metrics.per_tag):
        assert score.tag == LABELS[column]
        assert score.positives == int(targets[:, column].sum())
        assert score.roc_auc == pytest.approx(roc_auc_score(targets[:, column], scores[:, column]))
    assert 0.6 < metrics.roc_auc < 0.99  # informative scores, not a degenerate case
    assert metrics.n_clips == 40 and metrics.undefined_tags == []


def test_tags_without_positives_or_negatives_are_left_out_explicitly():
    targets, scores = fixed_inputs()
    targets[:, 2] = 0
    targets[:, 4] = 1
    metrics = tagging_metrics(targets, scores, LABELS)
    assert metrics.undefined_tags == ["tag2", "tag4"]
    assert metrics.per_tag[2].roc_auc is None and metrics.per_tag[2].pr_auc is None
    assert metrics.per_tag[4].positives == 40
    defined = [0, 1, 3, 5]
    assert metrics.roc_auc == pytest.approx(
        roc_auc_score(targets[:, defined], scores[:, defined], average="macro"))
    assert metrics.pr_auc == pytest.approx(
        average_precision_score(targets[:, defined], scores[:, defined], average="macro"))
    report = metrics.to_dict()
    assert report["n_tags_scored"] == 4 and report["undefined_tags"] == ["tag2", "tag4"]

    nothing = tagging_metrics(np.zeros((3, 2)), np.ones((3, 2)), ["a", "b"])
    assert nothing.roc_auc is None and nothing.pr_auc is None


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="do not match"):
        tagging_metrics(np.zeros((4, 3)), np.zeros((4, 2)), ["a", "b", "c"])


def test_clip_score_is_the_mean_of_its_windows():
    scores = np.array([[0.2, 0.4], [0.6, 0.8], [1.0, 0.0], [0.5, 0.5]], np.float32)
    means = WindowScores(scores, np.array([0, 0, 0, 2])).clip_means(3)
    np.testing.assert_allclose(means, [[0.6, 0.4], [0.0, 0.0], [0.5, 0.5]], rtol=1e-6)


def test_model_labels_are_matched_to_dataset_tags_by_name():
    labels, card_columns, dataset_columns = align_labels(["rock", "pop", "jazz"],
                                                         ["jazz", "folk", "rock"])
    assert labels == ["rock", "jazz"] and card_columns == [0, 2] and dataset_columns == [2, 0]
    with pytest.raises(ValueError, match="nothing in common"):
        align_labels(["a"], ["b"])
