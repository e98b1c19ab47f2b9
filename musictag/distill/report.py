"""The reports of ``musictag compare-teachers`` and ``musictag agreement``, built from Python.

:func:`compare_teachers` says how candidate teachers agree with each other and whether they hear
what a group of tracks plainly holds (choosing and weighting teachers); :func:`student_agreement`
says how far students agree with a teacher ensemble on any audio, with bootstrap intervals and
paired differences against the first student. Both return dataclasses whose ``to_dict()`` is the
JSON the commands print, raise :class:`~musictag.errors.MusictagError` for what cannot be done
(:class:`~musictag.errors.RunError` here, model and audio errors from below), and report the
stage they are in through ``on_status`` (the CLI shows it as a spinner); they never print.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..registry import ModelCard

#: Tracks shorter than this are left out of both reports (a 30 s excerpt or 8 windows need it).
MIN_DURATION_S = 4.0
#: The rate :func:`compare_teachers` decodes at; each teacher resamples to its own.
COMPARE_RATE_HZ = 22050

StatusCallback = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class TeacherComparison:
    """Teachers side by side on a sample of tracks (see :mod:`musictag.distill.agreement`)."""

    tracks: int
    groups: list[str]
    agreement: list[dict]
    plausibility: dict[str, Any]
    top5_by_group: dict[str, dict[str, list[str]]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_teachers(teachers: list[str], audio_dir: str | os.PathLike,
                     cache_dir: str | os.PathLike, *, expected: dict[str, list[str]] | None = None,
                     per_group: int = 6, on_status: StatusCallback | None = None,
                     ) -> TeacherComparison:
    """Score ``per_group`` tracks of each group with every teacher (a 30 s excerpt each).

    ``expected`` maps a group to the tags it plainly holds; without it there is no plausibility.
    Tags are named by the first teacher's labels.
    """
    from ..inference import load_tagger
    from .agreement import excerpt, pairwise_agreement, plausibility, sample_tracks, track_scores
    from .corpus import open_corpus

    status = on_status or _quiet
    audio_dir, cache_dir = Path(audio_dir), Path(cache_dir)
    rate = COMPARE_RATE_HZ
    status(f"decoding {audio_dir}")
    corpus = open_corpus(audio_dir, cache_dir, sample_rate_hz=rate,
                         min_duration_s=MIN_DURATION_S)
    chosen = sample_tracks(corpus.tracks, per_group)
    taggers = {name: load_tagger(name, device="cpu") for name in teachers}
    labels = next(iter(taggers.values())).labels
    excerpts = [excerpt(corpus, track, sample_rate_hz=rate) for track in chosen]
    groups = [track.group for track in chosen]
    scores = {}
    for name, tagger in taggers.items():
        status(f"scoring {len(chosen)} excerpts with {name}")
        scores[name] = track_scores(tagger, excerpts, sample_rate_hz=rate, labels=labels)
    in_group = {group: np.array(groups) == group for group in sorted(set(groups))}
    return TeacherComparison(
        tracks=len(chosen), groups=sorted(set(groups)),
        agreement=pairwise_agreement(scores),
        plausibility={name: plausibility(s, groups, expected, labels)
                      for name, s in scores.items()} if expected else {},
        top5_by_group={name: {group: [labels[i] for i in np.argsort(-s[mask].mean(axis=0))[:5]]
                              for group, mask in in_group.items()}
                       for name, s in scores.items()})


@dataclass
class StudentAgreement:
    """Students against a teacher ensemble on the same tracks and windows."""

    tracks: int
    windows_per_track: int
    groups: dict[str, Any]
    teachers: Any
    #: Per student: :func:`musictag.distill.validate.agreement`'s figures, and the evaluated
    #: groups its card says it trained on (``trained_on_evaluated_groups``: not held out for it).
    models: dict[str, dict[str, Any]]
    #: Per later student: :func:`musictag.distill.validate.paired_difference` against the first.
    paired_with_first: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trained_on(card: ModelCard, groups: set[str]) -> list[str]:
    """Evaluated groups a distilled card's provenance says it trained on (so not held out)."""
    provenance = card.provenance or {}
    trained = set(provenance.get("corpus_groups", {})) - set(
        provenance.get("held_out_groups", []))
    return sorted(trained & groups)


def student_agreement(students: list[str], teachers: list[str], audio_dir: str | os.PathLike,
                      cache_dir: str | os.PathLike, *, groups: list[str] | None = None,
                      windows_per_track: int = 8, on_status: StatusCallback | None = None,
                      ) -> StudentAgreement:
    """Each student's agreement with the ``teachers`` (specs: ``NAME`` or ``NAME:WEIGHT``).

    The students must share one sample rate and window (their windows are scored once); the
    teachers' labels of those windows are cached in ``cache_dir``. ``groups`` keeps only those
    first-level folders of ``audio_dir``.
    """
    from ..inference import load_tagger
    from .corpus import Corpus, open_corpus
    from .teachers import TeacherEnsemble, parse_teacher_spec
    from .validate import (
        agreement,
        cached_validation_set,
        paired_difference,
        tagger_track_scores,
        track_means,
    )

    status = on_status or _quiet
    audio_dir, cache_dir = Path(audio_dir), Path(cache_dir)
    taggers = {name: load_tagger(name, device="cpu", backend="torch") for name in students}
    first = next(iter(taggers.values())).card
    for name, tagger in taggers.items():
        if (tagger.card.sample_rate_hz, tagger.card.window_samples) != (
                first.sample_rate_hz, first.window_samples):
            raise RunError(f"model {name!r} hears {tagger.card.window_samples} samples "
                           f"at {tagger.card.sample_rate_hz} Hz, unlike {students[0]!r}: "
                           "compare models of one rate and window")
    rate, window = first.sample_rate_hz, first.window_samples
    ensemble = TeacherEnsemble([parse_teacher_spec(spec) for spec in teachers],
                               labels=first.labels, student_window_s=window / rate)
    status(f"decoding {audio_dir}")
    corpus = open_corpus(audio_dir, cache_dir, sample_rate_hz=rate,
                         min_duration_s=MIN_DURATION_S)
    tracks = corpus.split(set(groups))[1] if groups else corpus.tracks
    if not tracks:
        raise RunError(f"{audio_dir}: no tracks of at least {MIN_DURATION_S:.0f} s in any group "
                       "folder")
    status(f"labelling {len(tracks)} tracks with the teachers")
    windows = cached_validation_set(corpus, tracks, ensemble, sample_rate_hz=rate,
                                    student_window=window, windows_per_track=windows_per_track,
                                    cache_dir=cache_dir)
    teacher_scores = track_means(windows.teacher_scores, windows.track_of_window)
    status("scoring the students")
    scores = {name: tagger_track_scores(tagger, windows, ensemble.labels)
              for name, tagger in taggers.items()}
    evaluated = {track.group for track in tracks}
    models = {name: {**agreement(scores[name], teacher_scores, ensemble.labels),
                     "trained_on_evaluated_groups": trained_on(tagger.card, evaluated)}
              for name, tagger in taggers.items()}
    paired = {name: paired_difference(scores[students[0]], scores[name], teacher_scores)
              for name in students[1:]}
    return StudentAgreement(tracks=len(tracks), windows_per_track=windows_per_track,
                            groups=Corpus(corpus.cache, tracks).describe(rate),
                            teachers=ensemble.describe(), models=models, paired_with_first=paired)
