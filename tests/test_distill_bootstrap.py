"""Bootstrap intervals of the agreement figures: exact on the whole set, honest under resampling."""

from __future__ import annotations

import numpy as np

from musictag.distill.bootstrap import interval, macro_roc_auc, resample_indices
from musictag.distill.validate import agreement, paired_difference, top_k_mask

LABELS = [f"t{i}" for i in range(20)]


def _teacher_and_student(n_tracks: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    teacher = rng.random((n_tracks, len(LABELS)))
    student = np.round(teacher + noise * rng.standard_normal(teacher.shape), 1)  # with ties
    return teacher, student


def test_the_whole_set_as_one_resample_gives_sklearns_macro_roc_auc():
    teacher, student = _teacher_and_student(30, 0.3)
    whole = np.arange(30)[None, :]
    fast = macro_roc_auc(student, top_k_mask(teacher), whole)[0]
    assert abs(fast - agreement(student, teacher, LABELS)["macro_roc_auc"]) < 1e-12


def test_intervals_hold_the_estimate_and_narrow_with_more_tracks():
    widths = []
    for n_tracks in (30, 300):
        teacher, student = _teacher_and_student(n_tracks, 0.3)
        report = agreement(student, teacher, LABELS)
        low, high = report["macro_roc_auc_ci95"]
        assert low < report["macro_roc_auc"] < high
        low_overlap, high_overlap = report["mean_top5_overlap_ci95"]
        assert low_overlap <= report["mean_top5_overlap"] <= high_overlap
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0]  # about 1/sqrt(10) in theory


def test_paired_difference_is_zero_for_a_model_against_itself_and_sees_a_better_one():
    teacher, noisy = _teacher_and_student(60, 0.4)
    _, close = _teacher_and_student(60, 0.1)
    same = paired_difference(noisy, noisy, teacher)
    assert same["macro_roc_auc"] == {"difference": 0.0, "ci95": [0.0, 0.0]}
    better = paired_difference(noisy, close, teacher)
    assert better["macro_roc_auc"]["ci95"][0] > 0.0
    assert better["mean_top5_overlap"]["difference"] > 0.0
    worse = paired_difference(close, noisy, teacher)
    assert worse["macro_roc_auc"]["ci95"][1] < 0.0


def test_resamples_are_reproducible_and_undefined_figures_stay_undefined():
    np.testing.assert_array_equal(resample_indices(10, resamples=5),
                                  resample_indices(10, resamples=5))
    assert interval(np.array([np.nan, np.nan])) is None
    flat = np.tile(np.arange(len(LABELS), dtype=float), (8, 1))  # same top 5 on every track
    report = agreement(flat, flat, LABELS)
    assert report["macro_roc_auc"] is None and report["macro_roc_auc_ci95"] is None
