"""An unlabelled audio corpus, decoded once to memory-mappable arrays at the student's rate.

Distillation draws thousands of random segments per hour of training; decoding mp3/ogg for each
would cost more than the network. Each file is decoded once to a float16 ``.npy`` (half the disk
of float32, exact enough for 16-bit sources) and then read through ``np.load(mmap_mode="r")``.
The first folder level under the audio directory is the file's *group* (a source package, an
album): validation holds out whole groups, never random windows of tracks it trained on.
The cache is resumable: finished files are kept, and each is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..audio import AudioError, find_audio_files, load_mono
from ..errors import RunError
from ..fileio import atomic_open, atomic_path

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"


@dataclass(frozen=True)
class CorpusTrack:
    path: str  # relative to the audio directory
    group: str
    cache_file: str  # relative to the cache directory
    n_samples: int

    def duration_s(self, sample_rate_hz: int) -> float:
        return self.n_samples / sample_rate_hz


def cache_name(relative: str) -> str:
    digest = hashlib.sha1(relative.encode()).hexdigest()[:16]
    return f"{digest}.npy"


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


def build_cache(audio_dir: str | os.PathLike, cache_dir: str | os.PathLike, *,
                sample_rate_hz: int, min_duration_s: float, workers: int = 2,
                on_progress: Callable[[int, int], None] | None = None) -> list[CorpusTrack]:
    """Decode every audio file under ``audio_dir`` not yet cached; return the usable tracks.

    Files shorter than ``min_duration_s`` (sound effects, one-shot samples) and files that fail
    to decode are left out, the latter with a warning naming the file.
    """
    audio_dir, cache_dir = Path(audio_dir).resolve(), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    index_path = cache_dir / INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    if index.get("sample_rate_hz", sample_rate_hz) != sample_rate_hz:
        raise RunError(f"{cache_dir}: cache holds audio at {index['sample_rate_hz']} Hz, "
                       f"not {sample_rate_hz} Hz; use another cache folder")
    entries: dict[str, dict] = index.get("files", {})
    files = [p for p in find_audio_files([audio_dir]) if p.relative_to(audio_dir).parts[:-1]]
    jobs = [(str(p), str(cache_dir / cache_name(str(p.relative_to(audio_dir)))), sample_rate_hz)
            for p in files if str(p.relative_to(audio_dir)) not in entries]
    done = len(files) - len(jobs)
    if on_progress:
        on_progress(done, len(files))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for source, outcome in pool.map(_decode_one, jobs, chunksize=4):
            relative = str(Path(source).relative_to(audio_dir))
            if isinstance(outcome, str):
                log.warning("%s", outcome)
                entries[relative] = {"error": outcome}
            else:
                entries[relative] = {"n_samples": outcome, "cache_file": cache_name(relative)}
            done += 1
            if on_progress:
                on_progress(done, len(files))
            if done % 50 == 0:
                _write_index(index_path, sample_rate_hz, entries)
    _write_index(index_path, sample_rate_hz, entries)
    # The index outlives the folder: files removed since they were cached must not be trained on.
    present = {str(p.relative_to(audio_dir)) for p in files}
    return [CorpusTrack(path=relative, group=Path(relative).parts[0],
                        cache_file=entry["cache_file"], n_samples=entry["n_samples"])
            for relative, entry in sorted(entries.items())
            if relative in present and "n_samples" in entry
            and entry["n_samples"] >= min_duration_s * sample_rate_hz]


def _write_index(path: Path, sample_rate_hz: int, entries: dict[str, dict]) -> None:
    with atomic_open(path) as handle:
        json.dump({"sample_rate_hz": sample_rate_hz, "files": entries}, handle, indent=1)


class Corpus:
    """Cached tracks opened as memory maps; segments are read without loading whole files."""

    def __init__(self, cache_dir: str | os.PathLike, tracks: list[CorpusTrack]):
        if not tracks:
            raise RunError("no usable audio tracks in the corpus")
        self.cache_dir = Path(cache_dir)
        self.tracks = tracks
        self._maps: dict[str, np.ndarray] = {}

    def samples(self, track: CorpusTrack) -> np.ndarray:
        if track.cache_file not in self._maps:
            self._maps[track.cache_file] = np.load(self.cache_dir / track.cache_file,
                                                   mmap_mode="r")
        return self._maps[track.cache_file]

    def segment(self, track: CorpusTrack, start: int, length: int) -> np.ndarray:
        """float32 samples ``[start, start + length)``, zero-padded past the end of the track."""
        data = self.samples(track)
        piece = np.asarray(data[max(start, 0):max(start + length, 0)], dtype=np.float32)
        if len(piece) < length:
            piece = np.pad(piece, (0, length - len(piece)))
        return piece

    def split(self, held_out_groups: set[str]) -> tuple[list[CorpusTrack], list[CorpusTrack]]:
        unknown = held_out_groups - {t.group for t in self.tracks}
        if unknown:
            raise RunError(f"held-out group(s) not in the corpus: {', '.join(sorted(unknown))}")
        train = [t for t in self.tracks if t.group not in held_out_groups]
        held = [t for t in self.tracks if t.group in held_out_groups]
        return train, held

    def describe(self, sample_rate_hz: int) -> dict[str, dict]:
        groups: dict[str, dict] = {}
        for track in self.tracks:
            entry = groups.setdefault(track.group, {"tracks": 0, "hours": 0.0})
            entry["tracks"] += 1
            entry["hours"] += track.duration_s(sample_rate_hz) / 3600
        return {name: {**value, "hours": round(value["hours"], 3)}
                for name, value in sorted(groups.items())}


def tracks_as_dicts(tracks: list[CorpusTrack]) -> list[dict]:
    return [asdict(track) for track in tracks]
