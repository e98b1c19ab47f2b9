"""An unlabelled audio corpus, decoded once into the shared audio cache at the student's rate.

Distillation draws thousands of random segments per hour of training, so the corpus is decoded
once into a :class:`~musictag.data.cache.AudioCache` and read through memory maps. The first
folder level under the audio directory is the file's *group* (a source package, an album):
validation holds out whole groups, never random windows of tracks it trained on; files outside
any group folder are left out.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..audio import find_audio_files
from ..data.cache import AudioCache, DecodeProgress
from ..errors import RunError


@dataclass(frozen=True)
class CorpusTrack:
    path: str  # relative to the audio directory
    group: str
    #: The cached array's name in the cache folder. Not needed to read the track (the cache
    #: knows it) but part of :func:`tracks_as_dicts`, whose digest names stored agreement sets.
    cache_file: str
    n_samples: int

    def duration_s(self, sample_rate_hz: int) -> float:
        return self.n_samples / sample_rate_hz


def open_corpus(audio_dir: str | os.PathLike, cache_dir: str | os.PathLike, *,
                sample_rate_hz: int, min_duration_s: float, workers: int = 2,
                on_progress: DecodeProgress | None = None) -> Corpus:
    """Decode every audio file in a group folder of ``audio_dir`` not yet in ``cache_dir``.

    The corpus holds the usable tracks, sorted by path (their indices are part of a run's
    reproducibility): files shorter than ``min_duration_s`` (sound effects, one-shot samples)
    and files that fail to decode are left out, the latter with a warning naming the file. The
    cache's index outlives the folder, so only files the folder still holds are returned.
    """
    audio_dir = Path(audio_dir).resolve()
    relatives = [str(p.relative_to(audio_dir)) for p in find_audio_files([audio_dir])
                 if p.relative_to(audio_dir).parts[:-1]]
    cache = AudioCache(cache_dir, audio_dir, sample_rate_hz=sample_rate_hz)
    cache.decode(relatives, workers=workers, on_progress=on_progress)
    tracks = [CorpusTrack(path=relative, group=Path(relative).parts[0],
                          cache_file=cache.array_file(relative).name, n_samples=n_samples)
              for relative, n_samples in sorted(cache.lengths(relatives).items())
              if n_samples >= min_duration_s * sample_rate_hz]
    return Corpus(cache, tracks)


class Corpus:
    """Tracks of one audio cache, by group; segments are read without loading whole files."""

    def __init__(self, cache: AudioCache, tracks: list[CorpusTrack]):
        if not tracks:
            raise RunError("no usable audio tracks in the corpus")
        self.cache = cache
        self.tracks = tracks

    def segment(self, track: CorpusTrack, start: int, length: int) -> np.ndarray:
        """float32 samples ``[start, start + length)``, zero-padded past the end of the track."""
        return self.cache.segment(track.path, start, length)

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
