"""Truth beside agreement: how often a model names what a recording is known to hold.

Agreement with the teachers (:mod:`musictag.distill.validate`) says how well a student copies
them, not whether either is right. A *known-content check set* holds real recordings whose
source states their content (a solo violin note named as such, a recorded drum kit, a speaker
whose folder names her gender); its manifest maps each file to the MTAT tags that content
implies (``docs/distillation/fetch-check-set.sh`` builds one). A file is a *hit* for a model
when any of its expected tags is among the model's ``k`` highest track scores: a model that
hears a violin may say strings or solo first, and either is right.

The manifest is a tab-separated file with a header naming at least the columns ``path``
(relative to the manifest's folder), ``class`` (what the content is, for per-class rates) and
``tags`` (expected tags separated by ``|``); other columns (source, licence, how the file was
made) are kept for people and ignored here.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import AudioError
from ..errors import RunError
from ..inference import Tagger

REQUIRED_COLUMNS = ("path", "class", "tags")
TOP_K = 3

#: A file's tag scores: label -> track score.
Scores = Mapping[str, float]
#: Called with each file's path once a model has scored it.
FileCallback = Callable[[Path], None]


class KnownContentError(RunError):
    """A manifest that can't be read, or a file or tag that a model can't be checked on."""


@dataclass(frozen=True)
class CheckFile:
    """One manifest row: the audio file, its content class and the tags it implies."""

    path: Path
    content_class: str
    expected: tuple[str, ...]
    row: int  # line number in the manifest, header = 1, for error messages

    def where(self, manifest: Path) -> str:
        return f"{manifest}, row {self.row} ({self.path.name})"


@dataclass(frozen=True)
class FileHit:
    path: str
    content_class: str
    expected: tuple[str, ...]
    top: tuple[str, ...]  # the model's k best tags, best first
    hit: bool


@dataclass(frozen=True)
class ClassHits:
    n_files: int
    n_hits: int

    @property
    def hit_rate(self) -> float:
        return self.n_hits / self.n_files


@dataclass(frozen=True)
class HitReport:
    """One model's hits on a check set.

    ``hit_rate`` is over files; ``class_hit_rate`` is the mean of the per-class rates, so that
    a class with many files (guitar) weighs no more than one with few (flute).
    """

    k: int
    files: tuple[FileHit, ...]
    per_class: dict[str, ClassHits]

    @property
    def hit_rate(self) -> float:
        return sum(f.hit for f in self.files) / len(self.files)

    @property
    def class_hit_rate(self) -> float:
        return float(np.mean([c.hit_rate for c in self.per_class.values()]))


def read_manifest(manifest: str | os.PathLike) -> list[CheckFile]:
    """The rows of a check-set manifest, each path resolved against the manifest's folder.

    Raises :class:`KnownContentError` naming the manifest and row for a missing column, a row
    with a missing field, no expected tag, a path listed twice or an audio file that is not
    there: a check set that silently drops rows would report a rate over other files.
    """
    manifest = Path(manifest)
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as error:
        raise KnownContentError(f"{manifest}: cannot read the manifest ({error})") from error
    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise KnownContentError(f"{manifest}: the header lacks column(s) {', '.join(missing)} "
                                f"(it needs {', '.join(REQUIRED_COLUMNS)}, tab-separated)")
    files: list[CheckFile] = []
    seen: set[Path] = set()
    for row_number, row in enumerate(reader, start=2):
        fields = {c: (row.get(c) or "").strip() for c in REQUIRED_COLUMNS}
        empty = [c for c, value in fields.items() if not value]
        if empty or None in row:
            problem = (f"no {', '.join(empty)}" if empty
                       else f"{len(row[None]) + len(reader.fieldnames or [])} fields for "
                            f"{len(reader.fieldnames or [])} columns")
            raise KnownContentError(f"{manifest}, row {row_number}: {problem}")
        path = manifest.parent / fields["path"]
        expected = tuple(tag.strip() for tag in fields["tags"].split("|") if tag.strip())
        where = f"{manifest}, row {row_number} ({fields['path']})"
        if not expected:
            raise KnownContentError(f"{where}: no expected tag in {fields['tags']!r}")
        if path in seen:
            raise KnownContentError(f"{where}: the file is listed twice")
        if not path.is_file():
            raise KnownContentError(f"{where}: no such audio file {path}")
        seen.add(path)
        files.append(CheckFile(path, fields["class"], expected, row_number))
    if not files:
        raise KnownContentError(f"{manifest}: the manifest lists no file")
    return files


def tag_files(tagger: Tagger, files: Sequence[CheckFile], *,
              on_file: FileCallback | None = None) -> dict[Path, dict[str, float]]:
    """Each file's track scores from one model (its card's windows and averaging rule).

    Raises :class:`KnownContentError` for a file the model can't decode, rather than leaving
    it out of the rate.
    """
    scores: dict[Path, dict[str, float]] = {}
    for path, result in tagger.tag_many([f.path for f in files]):
        if isinstance(result, AudioError):
            raise KnownContentError(f"{path}: cannot be tagged ({result})") from result
        scores[Path(path)] = result.score_dict()
        if on_file:
            on_file(Path(path))
    return scores


def mean_scores(models: Sequence[Mapping[Path, Scores]]) -> dict[Path, dict[str, float]]:
    """Equal-weight mean of several models' track scores per file: the distillation target.

    Every model must have scored the same files over the same labels; a mean over a partial
    label set would rank tags some models never scored.
    """
    if not models:
        raise KnownContentError("a mean of no model's scores")
    labels = set(next(iter(models[0].values()), {}))
    for scores in models:
        if set(scores) != set(models[0]) or any(set(s) != labels for s in scores.values()):
            raise KnownContentError("the models to average scored different files or labels")
    return {path: {label: float(np.mean([s[path][label] for s in models])) for label in labels}
            for path in models[0]}


def hit_report(files: Iterable[CheckFile], scores: Mapping[Path, Scores], *,
               k: int = TOP_K, manifest: str | os.PathLike = "manifest") -> HitReport:
    """Hits of one model's ``scores`` on ``files``: any expected tag in its top ``k``.

    Ties in score are broken by label name, so a report is the same from run to run. Raises
    :class:`KnownContentError` naming the manifest row for a file the model did not score or
    an expected tag the model does not have (a misspelt tag would otherwise count as a miss).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    hits: list[FileHit] = []
    counts: dict[str, list[int]] = {}
    for file in files:
        if file.path not in scores:
            raise KnownContentError(f"{file.where(Path(manifest))}: the model did not score "
                                    f"this file")
        file_scores = scores[file.path]
        unknown = [tag for tag in file.expected if tag not in file_scores]
        if unknown:
            raise KnownContentError(f"{file.where(Path(manifest))}: the model has no tag "
                                    f"{', '.join(map(repr, unknown))}")
        top = tuple(sorted(file_scores, key=lambda label: (-file_scores[label], label))[:k])
        hit = any(tag in top for tag in file.expected)
        hits.append(FileHit(str(file.path), file.content_class, file.expected, top, hit))
        count = counts.setdefault(file.content_class, [0, 0])
        count[0] += 1
        count[1] += hit
    if not hits:
        raise KnownContentError("no file to report on")
    per_class = {name: ClassHits(n, h) for name, (n, h) in sorted(counts.items())}
    return HitReport(k=k, files=tuple(hits), per_class=per_class)
