"""The ``--output results.jsonl`` of a long run: an append-only log that survives ``kill -9``.

Every record is one JSON line written with a single ``write`` and made durable with ``fsync``
before the next file starts, so an interrupted run loses at most the file in flight and leaves at
most one partial last line. Readers ignore such a line; a resumed run cuts it off before appending.
A file counts as done when a record has its path, size and modification time: a file edited or
replaced since is tagged again, and its newer record (later in the log) wins.

An open log holds an exclusive ``flock`` until it is closed (the kernel drops it when the process
dies, even by ``kill -9``), so a second run on the same log stops instead of tagging every file a
second time and interleaving its records with the first run's.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..fileio import json_dumps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of a file across runs."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileKey:
        stat = os.stat(path)
        return cls(str(path), stat.st_size, stat.st_mtime_ns)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FileKey | None:
        try:
            return cls(str(record["path"]), int(record["size"]), int(record["mtime_ns"]))
        except (KeyError, TypeError, ValueError):
            return None

    def fields(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns}


def is_failure(record: dict[str, Any]) -> bool:
    return "error" in record


def read_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Complete records in file order; a torn last line (a killed writer) is skipped silently."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("%s: line %d is not JSON; ignored", path, number)
                continue
            if isinstance(record, dict) and "path" in record:
                yield record


def latest_records(paths: Iterable[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """One record per path; the last one written wins (a retried failure, an edited file)."""
    latest: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in read_records(path):
            latest.pop(record["path"], None)  # re-inserted: dict order follows the latest write
            latest[record["path"]] = record
    return latest


def complete_length(path: str | os.PathLike) -> int:
    """Bytes up to and including the last newline: what is left after cutting a torn line."""
    length = 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                length += len(line)
    return length


class LogInUseError(RunError, RuntimeError):
    """Another process has the log open for appending; ``str()`` is the line users see."""


@dataclass(frozen=True)
class Entry:
    """What the log knows about one path: the version recorded, and how it went."""

    key: FileKey
    failed: bool
    written_to: str | None  # the metadata field the tags were written into, if any


class RunLog:
    """A results log: what earlier runs recorded, and durable appends for this one.

    Created with ``resume``, it reads the earlier records; :meth:`open` then takes the lock, cuts
    off a torn last line and appends. Without ``resume``, :meth:`open` takes the lock and starts
    the log afresh. An open log is also
    a text stream (``write``/``flush``), so the ordinary record writer can write into it: whatever
    is written between two flushes becomes one durable append.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool):
        self.path = Path(path)
        self.resume = resume
        self.entries: dict[str, Entry] = {}
        self.models: set[str] = set()
        self._fd = -1
        self._pending: list[str] = []
        if resume and self.path.exists():
            self._load()

    def open(self) -> RunLog:
        """Lock the log, then cut it (to its complete lines, or to nothing without ``resume``).

        Raises :class:`LogInUseError` when another process holds the lock; the log is then left
        as it was (it is opened without ``O_TRUNC`` so that nothing is cut before the lock).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogInUseError(f"{self.path}: another musictag run is writing this log "
                                "(it holds the log's lock)") from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, complete_length(self.path) if self.resume else 0)
        self._fd = fd
        return self

    def _load(self) -> None:
        for record in read_records(self.path):
            key = FileKey.from_record(record)
            if key is None:
                continue
            self.entries[key.path] = Entry(key, is_failure(record), record.get("written_to"))
            if not is_failure(record) and "model" in record:
                self.models.add(str(record["model"]))

    def is_done(self, key: FileKey, *, retry_failed: bool = False,
                written_to: str | None = None) -> bool:
        """Whether this version of the file needs no work; ``written_to`` asks for tags in files."""
        entry = self.entries.get(key.path)
        if entry is None or entry.key != key:
            return False
        if entry.failed:
            return not retry_failed
        return written_to is None or entry.written_to == written_to

    def failed_earlier(self, key: FileKey) -> bool:
        entry = self.entries.get(key.path)
        return entry is not None and entry.key == key and entry.failed

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (its path must be a key's, with size and mtime_ns)."""
        self.write(json_dumps(record) + "\n")
        self.flush()

    def append_failure(self, key: FileKey, error: str) -> None:
        self.append({"path": key.path, **key.fields(), "error": error})

    def write(self, text: str) -> int:
        self._pending.append(text)
        return len(text)

    def flush(self) -> None:
        if not self._pending:
            return
        data = "".join(self._pending).encode("utf-8")
        self._pending = []
        written = os.write(self._fd, data)
        if written != len(data):  # a full disk; the torn tail is cut off on resume
            raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)",
                          str(self.path))
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
