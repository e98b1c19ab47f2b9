"""Result records and the machine-readable formats they are written in (json, jsonl, csv, tsv).

Records stream out as files finish, so a pipe sees results at once and a long run holds no list of
them. csv/tsv are "tidy": one row per (file, tag), which spreadsheets and pandas read directly.

A file name that is not valid UTF-8 is written losslessly: in json/jsonl its undecodable bytes are
``\\udcXX`` escapes (:func:`musictag.fileio.json_dumps`); in csv/tsv and the table they are the
name's own bytes, as ``ls`` prints them (the stream is opened with ``errors="surrogateescape"``,
see :data:`PATH_ERRORS`), so ``open(f, errors="surrogateescape")`` reads the same name back.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .audio import AudioError
from .errors import RunError
from .fileio import json_dumps
from .inference import Tagger, TagResult

MACHINE_FORMATS = ("json", "jsonl", "csv", "tsv")
#: The ``errors`` handler for every text stream results go to: undecodable file-name bytes
#: (lone surrogates) are written back as the bytes they stand for.
PATH_ERRORS = "surrogateescape"
#: How each kind of file musictag writes begins: a jsonl record or log line, a json array, the
#: csv and tsv headers, a table's top-left corner.
_RESULT_STARTS = (b'{"path": ', b'[\n{\n  "path": ', b"[]\n", b"path,rank,tag,score\n",
                  b"path\trank\ttag\tscore\n", "\u250f".encode())


def result_record(result: TagResult, *, model: str, tags: list[tuple[str, float]],
                  all_scores: bool = False, backend: str | None = None,
                  precision: str | None = None) -> dict[str, Any]:
    """One file's record; ``backend`` and ``precision`` say which path computed the scores
    (records written before they were recorded lack both: those were fp32)."""
    record: dict[str, Any] = {
        "path": result.path,
        "model": model,
        **({"backend": backend} if backend else {}),
        **({"precision": precision} if precision else {}),
        "duration_s": round(result.duration_s, 3),
        "n_windows": result.n_windows,
        "tags": [{"tag": tag, "score": round(score, 6)} for tag, score in tags],
    }
    if all_scores:
        record["scores"] = {tag: round(score, 6) for tag, score in result.score_dict().items()}
    return record


def tag_records(tagger: Tagger, paths: Iterable[str | os.PathLike], *, top_k: int | None = 5,
                thresholds: float | dict[str, float] | None = None, all_scores: bool = False,
                ) -> Iterator[tuple[str | os.PathLike, dict[str, Any] | AudioError]]:
    """``(path, record)`` per file in order through :meth:`Tagger.tag_many`, or the file's
    AudioError: the one place a result becomes a record, for each engine (local and ray)."""
    for path, result in tagger.tag_many(paths):
        if isinstance(result, AudioError):
            yield path, result
        else:
            tags = result.select(top_k=top_k, thresholds=thresholds)
            yield path, result_record(result, model=tagger.card.name, tags=tags,
                                      all_scores=all_scores, backend=tagger.backend.name,
                                      precision=tagger.precision)


class RecordWriter:
    """Writes records to a text stream in one of :data:`MACHINE_FORMATS` as they arrive."""

    def __init__(self, stream: IO[str], fmt: str):
        if fmt not in MACHINE_FORMATS:
            raise RunError(f"unknown format {fmt!r}")
        self.stream, self.fmt, self.count = stream, fmt, 0
        self._csv = None
        if fmt in ("csv", "tsv"):
            self._csv = csv.writer(stream, delimiter="," if fmt == "csv" else "\t",
                                   lineterminator="\n")
            self._csv.writerow(["path", "rank", "tag", "score"])

    def write(self, record: dict[str, Any]) -> None:
        if self._csv is not None:
            for rank, item in enumerate(record["tags"], start=1):
                self._csv.writerow([record["path"], rank, item["tag"], f"{item['score']:.6f}"])
        elif self.fmt == "jsonl":
            self.stream.write(json_dumps(record) + "\n")
        else:
            self.stream.write(("[\n" if self.count == 0 else ",\n") + json_dumps(record, indent=2))
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("[]\n" if self.count == 0 else "\n]\n")
            self.stream.flush()


def is_results_file(path: str | os.PathLike) -> bool:
    """Whether an existing file is empty or begins as musictag's results and logs begin.

    ``--output`` replaces or appends to its file; anything else found there (an audio file named
    by mistake, say) must be refused rather than destroyed.
    """
    with open(path, "rb") as handle:
        head = handle.read(64)
    return not head or head.startswith(_RESULT_STARTS)
