"""Decode each clip once into a memory-mappable ``.npy``, so training epochs never decode mp3 again.

One folder per sample rate (``CACHE/22050hz/``), one float16 file per clip (half the disk of
float32; exact enough for sources that were 16-bit or mp3 to begin with), named by a hash of the
clip's path. Each file is written atomically, so an interrupted run keeps what it finished and the
next one decodes only the rest; a clip that cannot be decoded leaves a ``.err`` file with its
one-line reason instead, so it is reported again but not retried. There is no shared index to
update, which lets every process of a distributed run decode its own share at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..audio import AudioError, load_mono
from ..errors import RunError
from ..fileio import atomic_open, atomic_path

log = logging.getLogger(__name__)

#: Called with (clips done, clips in all).
DecodeProgress = Callable[[int, int], None]


def default_cache_dir(data_dir: str | os.PathLike) -> Path:
    """``<musictag cache>/datasets/<folder name>-<hash of its absolute path>``."""
    from ..hub import cache_dir

    resolved = Path(data_dir).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    return cache_dir() / "datasets" / f"{resolved.name}-{digest}"


def _decode_one(job: tuple[str, str, str, int]) -> tuple[str, int | str]:
    """Worker: decode ``source`` into ``target`` (or its error into ``error_file``)."""
    source, target, error_file, sample_rate_hz = job
    try:
        samples = load_mono(source, sample_rate_hz=sample_rate_hz)
    except AudioError as error:
        with atomic_open(error_file) as handle:
            handle.write(str(error) + "\n")
        return source, str(error)
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        np.save(handle, np.clip(samples, -1.0, 1.0).astype(np.float16))
    return source, len(samples)


class AudioCache:
    """Decoded clips of one audio root at one sample rate."""

    def __init__(self, cache_dir: str | os.PathLike, audio_root: str | os.PathLike, *,
                 sample_rate_hz: int):
        self.folder = Path(cache_dir) / f"{sample_rate_hz}hz"
        self.audio_root = Path(audio_root)
        self.sample_rate_hz = sample_rate_hz

    def _stem(self, relative: str) -> Path:
        return self.folder / hashlib.sha1(relative.encode()).hexdigest()[:20]

    def array_file(self, relative: str) -> Path:
        return self._stem(relative).with_suffix(".npy")

    def error_file(self, relative: str) -> Path:
        return self._stem(relative).with_suffix(".err")

    def is_done(self, relative: str) -> bool:
        return self.array_file(relative).exists() or self.error_file(relative).exists()

    def decode(self, relatives: list[str], *, workers: int = 2,
               on_progress: DecodeProgress | None = None) -> None:
        """Decode every clip not yet cached, ``workers`` at a time; failures become warnings."""
        self.folder.mkdir(parents=True, exist_ok=True)
        todo = [r for r in relatives if not self.is_done(r)]
        done = len(relatives) - len(todo)
        if on_progress:
            on_progress(done, len(relatives))
        jobs = [(str(self.audio_root / r), str(self.array_file(r)), str(self.error_file(r)),
                 self.sample_rate_hz) for r in todo]
        if workers <= 1 or len(jobs) <= 1:
            outcomes = map(_decode_one, jobs)
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=workers)
            outcomes = pool.map(_decode_one, jobs, chunksize=4)
        try:
            for _, outcome in outcomes:
                if isinstance(outcome, str):
                    log.warning("%s", outcome)
                done += 1
                if on_progress:
                    on_progress(done, len(relatives))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def lengths(self, relatives: list[str]) -> dict[str, int]:
        """Samples per decoded clip; clips that failed are left out (and warned about again)."""
        result = {}
        for relative in relatives:
            if self.array_file(relative).exists():
                result[relative] = len(self.samples(relative))
            elif self.error_file(relative).exists():
                log.warning("%s", self.error_file(relative).read_text().strip())
            else:
                raise RunError(f"{self.audio_root / relative}: not in the cache "
                               f"{self.folder} yet; preprocess the dataset first")
        return result

    def samples(self, relative: str) -> np.ndarray:
        """The clip as a read-only float16 memory map.

        Maps are opened per call and not kept: each holds a file descriptor, and MTAT has 21105
        clips, more than a process may usually keep open. Opening one costs microseconds.
        """
        return np.load(self.array_file(relative), mmap_mode="r")

    def segment(self, relative: str, start: int, length: int) -> np.ndarray:
        """float32 samples ``[start, start + length)``, zero-padded past the end of the clip."""
        piece = np.asarray(self.samples(relative)[start:start + length], dtype=np.float32)
        if len(piece) < length:
            piece = np.pad(piece, (0, length - len(piece)))
        return piece
