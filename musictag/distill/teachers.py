"""Teachers: published taggers whose weighted scores are the student's soft targets.

Each teacher runs at its own sample rate on its own window length, centred on the student's
window: the student learns from the exact (augmented) audio the teacher heard, the teacher's
window reaching a little past the student's on both sides when it is longer (3 s for musicnn
against the student's 2.68 s). Teachers whose window is far longer than the student's (FCN and
CRNN take 29 s) cannot label a 2.7 s window and are refused here; they still take part in the
agreement analysis on whole tracks (:mod:`musictag.distill.agreement`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from ..errors import RunError
from ..inference import Tagger, load_tagger

#: The longest teacher window accepted, relative to the student's.
MAX_WINDOW_RATIO = 1.5


@dataclass
class Teacher:
    name: str
    weight: float
    tagger: Tagger
    columns: np.ndarray  # teacher output index of each student label

    @property
    def window_s(self) -> float:
        return self.tagger.card.window_samples / self.tagger.card.sample_rate_hz


def parse_teacher_spec(spec: str) -> tuple[str, float]:
    """``NAME`` or ``NAME:WEIGHT`` (weight 1 when omitted)."""
    name, _, weight = spec.partition(":")
    try:
        value = float(weight) if weight else 1.0
    except ValueError:
        raise RunError(f"teacher {spec!r}: weight {weight!r} is not a number") from None
    if value <= 0:
        raise RunError(f"teacher {spec!r}: weight must be positive")
    return name, value


class TeacherEnsemble:
    """Weighted mean of several teachers' sigmoid scores, over the student's label order."""

    def __init__(self, specs: list[tuple[str, float]], *, labels: list[str] | None = None,
                 student_window_s: float, device: str = "cpu", batch_size: int = 16):
        if not specs:
            raise RunError("at least one teacher is needed")
        taggers = [(name, weight, load_tagger(name, device=device, batch_size=batch_size))
                   for name, weight in specs]
        self.labels = list(labels or taggers[0][2].labels)
        total = sum(weight for _, weight, _ in taggers)
        self.teachers = []
        for name, weight, tagger in taggers:
            missing = [label for label in self.labels if label not in tagger.labels]
            if missing:
                raise RunError(f"teacher {name!r} has no output for {', '.join(missing[:5])}")
            teacher = Teacher(name, weight / total, tagger,
                              np.array([tagger.labels.index(label) for label in self.labels]))
            if teacher.window_s > MAX_WINDOW_RATIO * student_window_s:
                raise RunError(f"teacher {name!r} listens to {teacher.window_s:.1f} s windows; "
                               f"it cannot label {student_window_s:.2f} s student windows")
            self.teachers.append(teacher)
        self.span_s = max(student_window_s, *(t.window_s for t in self.teachers))

    def describe(self) -> list[dict]:
        return [{"name": t.name, "weight": round(t.weight, 4), "window_s": round(t.window_s, 3),
                 "sample_rate_hz": t.tagger.card.sample_rate_hz} for t in self.teachers]

    def score(self, segments: np.ndarray, *, sample_rate_hz: int) -> np.ndarray:
        """Soft targets ``(batch, n_labels)`` for segments ``(batch, span)`` at ``sample_rate_hz``.

        Each teacher gets the centre of every segment, resampled to its rate and cut to its
        window, so all teachers and the student hear the same moment.
        """
        targets = np.zeros((len(segments), len(self.labels)), np.float32)
        for teacher in self.teachers:
            card = teacher.tagger.card
            windows = np.stack([centre(soxr.resample(segment, sample_rate_hz,
                                                     card.sample_rate_hz, quality="HQ"),
                                       card.window_samples) for segment in segments])
            scores = np.concatenate([teacher.tagger.predict(windows[i:i + 32])
                                     for i in range(0, len(windows), 32)])
            targets += teacher.weight * scores[:, teacher.columns]
        return targets


def centre(samples: np.ndarray, length: int) -> np.ndarray:
    """The middle ``length`` samples, zero-padded equally on both sides when too short."""
    if len(samples) >= length:
        start = (len(samples) - length) // 2
        return np.ascontiguousarray(samples[start:start + length], dtype=np.float32)
    padded = np.zeros(length, np.float32)
    offset = (length - len(samples)) // 2
    padded[offset:offset + len(samples)] = samples
    return padded
