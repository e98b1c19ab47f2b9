"""Embeddings for similarity search: a model's penultimate layer, one vector per track.

A track's vector is the mean of its windows' penultimate activations (512 values for the 3^9
SampleCNN), the same averaging that turns window scores into track scores. Tracks are compared by
cosine similarity, which ignores the vectors' lengths: the direction says what is played. The
index is one ``.npz`` file:

- ``paths`` (n_files,) str and ``embeddings`` (n_files, embedding_size) float32;
- ``model`` () str: the card whose network made them (queries must use the same one);
- with per-window vectors also ``window_embeddings`` (n_windows_total, embedding_size) float32
  and ``window_file`` (n_windows_total,) int32, the row in ``paths`` each window belongs to.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..audio import AudioError
from ..errors import RunError
from ..fileio import atomic_path
from ..inference import Tagger


def embed_files(tagger: Tagger, paths: Iterable[str | os.PathLike],
                ) -> Iterator[tuple[str | os.PathLike, np.ndarray | AudioError]]:
    """``(path, window vectors (n_windows, embedding_size))`` per file in order, or the file's
    AudioError: what ``musictag embed`` indexes, on either engine (local and ray)."""
    for path in paths:
        try:
            yield path, tagger.embed(path)
        except AudioError as error:
            yield path, error


@dataclass
class EmbeddingIndex:
    paths: list[str]
    embeddings: np.ndarray  # (n_files, embedding_size)
    model: str
    window_embeddings: np.ndarray | None = None  # (n_windows_total, embedding_size)
    window_file: np.ndarray | None = None  # (n_windows_total,) row of each window's file

    @classmethod
    def from_windows(cls, items: Iterable[tuple[str, np.ndarray]], *, model: str,
                     per_window: bool = False) -> EmbeddingIndex:
        """An index from ``(path, window vectors (n_windows, embedding_size))`` pairs."""
        paths: list[str] = []
        means: list[np.ndarray] = []
        windows: list[np.ndarray] = []
        for path, vectors in items:
            paths.append(str(path))
            means.append(vectors.mean(axis=0))
            if per_window:
                windows.append(vectors)
        if not paths:
            raise RunError("no files to index")
        index = cls(paths, np.stack(means).astype(np.float32), model)
        if per_window:
            index.window_embeddings = np.concatenate(windows).astype(np.float32)
            index.window_file = np.repeat(np.arange(len(paths), dtype=np.int32),
                                          [len(w) for w in windows])
        return index

    def save(self, target: str | os.PathLike) -> None:
        arrays = {"paths": np.array(self.paths, dtype=str), "embeddings": self.embeddings,
                  "model": np.array(self.model)}
        if self.window_embeddings is not None:
            arrays["window_embeddings"] = self.window_embeddings
            arrays["window_file"] = self.window_file
        with atomic_path(target) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, source: str | os.PathLike) -> EmbeddingIndex:
        """Raises ``ValueError`` for a file that is not an index written by :meth:`save`."""
        try:
            with np.load(source, allow_pickle=False) as data:
                return cls([str(p) for p in data["paths"]], data["embeddings"].astype(np.float32),
                           str(data["model"]),
                           data.get("window_embeddings"), data.get("window_file"))
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise RunError(f"{source}: not an embeddings index ({error})") from None

    def vector(self, path: str) -> np.ndarray | None:
        try:
            return self.embeddings[self.paths.index(path)]
        except ValueError:
            return None

    def nearest(self, query: np.ndarray, *, k: int = 10,
                exclude: str | None = None) -> list[tuple[str, float]]:
        """The ``k`` tracks most cosine-similar to ``query``, best first, without ``exclude``."""
        similarity = unit_rows(self.embeddings) @ unit_rows(query[None, :])[0]
        order = np.argsort(-similarity, kind="stable")
        ranked = [(self.paths[i], float(similarity[i])) for i in order
                  if self.paths[i] != exclude]
        return ranked[:k]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (an all-zero row stays zero and so matches nothing)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
