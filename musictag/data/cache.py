"""Decode each audio file once into a memory-mappable ``.npy``, for training and distillation alike.

Training epochs and distillation draw thousands of segments an hour; decoding mp3/ogg for each
would cost more than the network. A cache folder holds one sample rate: one float16 ``.npy`` per
file (half the disk of float32; exact enough for sources that were 16-bit or mp3 to begin with),
named by a hash of the file's path under the audio root, and ``index.json``, which records per
path its length or the one-line reason it could not be decoded (so a broken file is reported
again but not retried) and the folder's sample rate (so that another rate is refused, not mixed
in). Every file is written atomically and the index is merged under a lock on the folder, so an
interrupted run keeps what it finished and every process of a distributed run can decode its own
share at once.

This is the layout ``musictag distill`` has always written. Dataset caches written before it
(``CACHE/<rate>hz/<20-hex-digit hash>.npy`` or ``.err``, no index) are adopted as they are found:
their files are recorded in the index under their old names, never decoded again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import AudioError, load_mono
from ..errors import RunError
from ..fileio import atomic_open, atomic_path

log = logging.getLogger(__name__)

#: Called with (files done, files in all).
DecodeProgress = Callable[[int, int], None]

INDEX_NAME = "index.json"
#: Hex digits of the path hash that names a cached file; dataset caches of before the index
#: used 20 (see :meth:`AudioCache._legacy_entry`).
NAME_DIGITS = 16
LEGACY_NAME_DIGITS = 20
#: Decoded files between two index writes: what an interruption can cost to decode again.
INDEX_EVERY = 50


def default_cache_dir(data_dir: str | os.PathLike) -> Path:
    """``<musictag cache>/datasets/<folder name>-<hash of its absolute path>``."""
    from ..hub import cache_dir

    resolved = Path(data_dir).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    return cache_dir() / "datasets" / f"{resolved.name}-{digest}"


def _hash_name(relative: str, digits: int) -> str:
    return hashlib.sha1(relative.encode()).hexdigest()[:digits]


def _decode_one(job: tuple[str, str, int]) -> tuple[str, int | str]:
    """Worker: decode ``source`` into ``target``; returns its length or the error line."""
    source, target, sample_rate_hz = job
    try:
        samples = load_mono(source, sample_rate_hz=sample_rate_hz)
    except AudioError as error:
        return source, str(error)
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.clip(samples, -1.0, 1.0).astype(np.float16))
    return source, len(samples)


class AudioCache:
    """Decoded files of one audio root at one sample rate, in ``folder``.

    Files are named by their path relative to ``audio_root`` (``relative`` below), so the cache
    stays valid when the whole root moves.
    """

    def __init__(self, folder: str | os.PathLike, audio_root: str | os.PathLike, *,
                 sample_rate_hz: int):
        self.folder = Path(folder)
        self.audio_root = Path(audio_root)
        self.sample_rate_hz = sample_rate_hz
        self._entries = self._read_index()

    @classmethod
    def per_rate(cls, cache_dir: str | os.PathLike, audio_root: str | os.PathLike, *,
                 sample_rate_hz: int) -> AudioCache:
        """The cache in ``cache_dir/<rate>hz``: one dataset cache serves models of any rate."""
        return cls(Path(cache_dir) / f"{sample_rate_hz}hz", audio_root,
                   sample_rate_hz=sample_rate_hz)

    # --- the index ---------------------------------------------------------------------------

    def _read_index(self) -> dict[str, dict[str, Any]]:
        path = self.folder / INDEX_NAME
        try:
            index = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as error:
            raise RunError(f"{path}: unreadable cache index ({error})") from None
        if index["sample_rate_hz"] != self.sample_rate_hz:
            raise RunError(f"{self.folder}: cache holds audio at {index['sample_rate_hz']} Hz, "
                           f"not {self.sample_rate_hz} Hz; use another cache folder")
        return index["files"]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the folder: one process at a time merges into the index."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)

    def _record(self, entries: dict[str, dict[str, Any]]) -> None:
        """Merge ``entries`` into the index on disk (another process may have added others)."""
        with self._locked():
            merged = {**self._read_index(), **entries}
            with atomic_open(self.folder / INDEX_NAME) as handle:
                json.dump({"sample_rate_hz": self.sample_rate_hz, "files": merged}, handle,
                          indent=1)
        self._entries = merged

    def _legacy_entry(self, relative: str) -> dict[str, Any] | None:
        """The entry of a file a dataset cache of before the index holds, if it holds one."""
        stem = self.folder / _hash_name(relative, LEGACY_NAME_DIGITS)
        array, error = stem.with_suffix(".npy"), stem.with_suffix(".err")
        if array.exists():
            return {"n_samples": len(np.load(array, mmap_mode="r")), "cache_file": array.name}
        if error.exists():
            return {"error": error.read_text().strip()}
        return None

    # --- decoding ----------------------------------------------------------------------------

    def array_file(self, relative: str) -> Path:
        """Where the decoded file is (or will be written)."""
        entry = self._entries.get(relative, {})
        return self.folder / entry.get("cache_file", f"{_hash_name(relative, NAME_DIGITS)}.npy")

    def is_done(self, relative: str) -> bool:
        """Decoded (and its array still there) or known to fail."""
        entry = self._entries.get(relative)
        return entry is not None and ("error" in entry or self.array_file(relative).exists())

    def decode(self, relatives: list[str], *, workers: int = 2,
               on_progress: DecodeProgress | None = None) -> None:
        """Decode every file not yet cached, ``workers`` at a time; failures become warnings."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._entries = self._read_index()
        adopted = {r: entry for r in relatives if not self.is_done(r)
                   and (entry := self._legacy_entry(r)) is not None}
        if adopted:
            self._record(adopted)
        todo = [r for r in relatives if not self.is_done(r)]
        done = len(relatives) - len(todo)
        if on_progress:
            on_progress(done, len(relatives))
        jobs = [(str(self.audio_root / r), str(self.folder / f"{_hash_name(r, NAME_DIGITS)}.npy"),
                 self.sample_rate_hz) for r in todo]
        if workers <= 1 or len(jobs) <= 1:
            outcomes = map(_decode_one, jobs)
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=workers)
            outcomes = pool.map(_decode_one, jobs, chunksize=4)
        fresh: dict[str, dict[str, Any]] = {}
        try:
            for relative, (_, outcome) in zip(todo, outcomes, strict=True):
                if isinstance(outcome, str):
                    log.warning("%s", outcome)
                    fresh[relative] = {"error": outcome}
                else:
                    fresh[relative] = {"n_samples": outcome,
                                       "cache_file": f"{_hash_name(relative, NAME_DIGITS)}.npy"}
                done += 1
                if on_progress:
                    on_progress(done, len(relatives))
                if len(fresh) >= INDEX_EVERY:
                    self._record(fresh)
                    fresh = {}
        finally:
            if fresh:
                self._record(fresh)
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    # --- reading -----------------------------------------------------------------------------

    def lengths(self, relatives: list[str]) -> dict[str, int]:
        """Samples per decoded file; files that failed are left out (and warned about again).

        Reads the index from disk first: under torchrun the other processes decoded their
        shares into it.
        """
        self._entries = self._read_index()
        result = {}
        for relative in relatives:
            if not self.is_done(relative):
                raise RunError(f"{self.audio_root / relative}: not in the cache "
                               f"{self.folder} yet; preprocess the dataset first")
            entry = self._entries[relative]
            if "error" in entry:
                log.warning("%s", entry["error"])
            else:
                result[relative] = int(entry["n_samples"])
        return result

    def samples(self, relative: str) -> np.ndarray:
        """The file as a read-only float16 memory map.

        Maps are opened per call and not kept: each holds a file descriptor, and MTAT has 21105
        clips, more than a process may usually keep open. Opening one costs microseconds.
        """
        return np.load(self.array_file(relative), mmap_mode="r")

    def segment(self, relative: str, start: int, length: int) -> np.ndarray:
        """float32 samples ``[start, start + length)``, zero-padded past the end of the file."""
        data = self.samples(relative)
        piece = np.asarray(data[max(start, 0):max(start + length, 0)], dtype=np.float32)
        if len(piece) < length:
            piece = np.pad(piece, (0, length - len(piece)))
        return piece
