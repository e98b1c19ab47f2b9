"""Tagging: audio file -> windows -> batched backend calls -> one score per label.

A track's score is the mean of its windows' sigmoid outputs (the paper's rule); the card says how
the windows are placed. The library reports progress through a callback and never prints.

Many files (:meth:`Tagger.tag_many`) go through a pipeline: one thread decodes and cuts windows
into a bounded queue while the caller's thread runs the network, so decoding the next files
overlaps inference, and windows of consecutive files fill the same batches (a library of 30 s
clips gives 11 windows per file, less than one batch). Memory stays bounded by the queue, whatever
the files' lengths: a two-hour file streams through in batch-sized chunks.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from . import audio
from .errors import ModelError
from .fastpath import Choice, check_precision, choose_path, cpu_flags, int8_file
from .hub import local_weights
from .registry import DEFAULT_MODEL, ModelCard, get_card
from .weights import read_weights

log = logging.getLogger(__name__)

#: Called with the number of windows just scored.
ProgressCallback = Callable[[int], None]


class Backend(Protocol):
    name: str
    precision: str

    def predict(self, windows: np.ndarray) -> np.ndarray: ...

    def embed(self, windows: np.ndarray) -> np.ndarray: ...


@dataclass
class TagResult:
    path: str
    labels: list[str]
    scores: np.ndarray  # (n_labels,) mean of window sigmoids
    window_scores: np.ndarray  # (n_windows, n_labels)
    duration_s: float  # the decoded audio's length, not the windows' coverage of it
    window_s: float = field(default=0.0)

    @property
    def n_windows(self) -> int:
        return len(self.window_scores)

    def select(self, *, top_k: int | None = 5,
               thresholds: float | dict[str, float] | None = None) -> list[tuple[str, float]]:
        """Tags by falling score: those at or over their threshold, then at most ``top_k``."""
        order = np.argsort(-self.scores, kind="stable")
        chosen = []
        for index in order:
            label, score = self.labels[index], float(self.scores[index])
            if thresholds is not None:
                limit = thresholds if isinstance(thresholds, float) else thresholds.get(label)
                if limit is None or score < limit:
                    continue
            chosen.append((label, score))
        return chosen if top_k is None else chosen[:top_k]

    def score_dict(self) -> dict[str, float]:
        return {label: float(score) for label, score in zip(self.labels, self.scores, strict=True)}


BACKENDS = ("auto", "torch", "onnx")
#: Chunks of up to one batch of windows waiting between the decode thread and inference.
QUEUE_CHUNKS = 4


def default_threads() -> int:
    """Compute threads for inference: every core this process may use, less one on big machines.

    On a laptop or a 2-core VM all cores compute and the decode thread squeezes in between
    batches (it needs a few percent of one core); from 8 cores on, one core is left to decoding so
    that it never waits behind a compute thread. Past 32 threads a batch of windows no longer
    splits into enough work per thread, so larger machines are better used by several processes
    (``musictag tag --shard K/N``).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        cores = os.cpu_count() or 1
    return max(1, min(cores - 1 if cores >= 8 else cores, 32))


class ModelOutputError(audio.AudioError):
    """The model gave NaN or infinite scores for a file; the file fails, naming the model.

    A sigmoid of finite numbers is finite, so such scores mean damaged weights (a NaN weight
    makes every score NaN) or a network driven out of range; written out, NaN is not valid JSON
    and passes every threshold test unnoticed. Reported per file like an unreadable one, since
    it may be one file's audio that overflows.
    """


class FileWindows:
    """The card's windows of one file (an iterator), and the length of the audio decoded.

    Windows do not give a track's length: consecutive windows drop a short remainder and cover
    a clip shorter than one window, and evenly spaced ones cover 48 s of any track.
    """

    def __init__(self, card: ModelCard, path: str | os.PathLike):
        rate = card.sample_rate_hz
        info, self._stream = audio.stream_mono(path, sample_rate_hz=rate)
        expected = (None if info.n_frames is None
                    else int(info.n_frames * rate / info.sample_rate_hz))
        self._windows = audio.cut_windows(self._stream, window_samples=card.window_samples,
                                          rule=card.window_rule, total_samples=expected,
                                          sample_rate_hz=rate, path=path)

    @property
    def duration_s(self) -> float:
        """Seconds decoded so far: the file's real length once the windows are exhausted."""
        return self._stream.duration_s

    def __iter__(self) -> FileWindows:
        return self

    def __next__(self) -> np.ndarray:
        return next(self._windows)


def card_windows(card: ModelCard, path: str | os.PathLike) -> FileWindows:
    """The card's windows of a file, decoded and resampled block by block."""
    return FileWindows(card, path)


def batched(windows: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for window in windows:
        batch.append(window)
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


class Tagger:
    """A loaded model and the preprocessing its card prescribes."""

    def __init__(self, card: ModelCard, backend: Backend, *, batch_size: int = 16,
                 reason: str = ""):
        if batch_size < 1:
            raise ModelError("batch size must be at least 1")
        self.card = card
        self.backend = backend
        self.batch_size = batch_size
        #: Why this backend and precision run (``-v`` prints it).
        self.reason = reason

    @property
    def precision(self) -> str:
        """The arithmetic the scores come from: fp32, bf16 or int8 (recorded with each result)."""
        return getattr(self.backend, "precision", "fp32")

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Sigmoid scores ``(batch, n_labels)`` for float32 windows ``(batch, window_samples)``."""
        if windows.ndim != 2 or windows.shape[1] != self.card.window_samples:
            raise ModelError(f"windows must have shape (batch, {self.card.window_samples}), "
                             f"got {windows.shape}")
        return self.backend.predict(windows)

    def windows(self, path: str | os.PathLike) -> FileWindows:
        """The card's windows of a file, decoded and resampled block by block."""
        return card_windows(self.card, path)

    def tag(self, path: str | os.PathLike, *,
            on_progress: ProgressCallback | None = None) -> TagResult:
        """Tag one file; raises :class:`musictag.audio.AudioError` for a file that can't be read
        and :class:`ModelOutputError` when the model's scores for it are not finite."""
        window_scores = []
        windows = self.windows(path)
        for batch in batched(windows, self.batch_size):
            window_scores.append(self.predict(batch))
            if on_progress:
                on_progress(len(batch))
        return self._result(path, np.concatenate(window_scores), windows.duration_s)

    def embed(self, path: str | os.PathLike) -> np.ndarray:
        """Penultimate-layer vectors ``(n_windows, embedding_size)`` of a file's windows.

        For similarity search (:mod:`musictag.library.embed`); raises
        :class:`musictag.audio.AudioError` like :meth:`tag`.
        """
        vectors = np.concatenate([self.backend.embed(batch)
                                  for batch in batched(self.windows(path), self.batch_size)])
        self._check_finite(path, vectors, "embeddings")
        return vectors

    def _check_finite(self, path: str | os.PathLike, values: np.ndarray, what: str) -> None:
        if not np.isfinite(values).all():
            raise ModelOutputError(path, f"model {self.card.name!r} gave NaN or infinite {what} "
                                         f"(damaged weights?); not tagged")

    def _result(self, path: str | os.PathLike, scores: np.ndarray,
                duration_s: float) -> TagResult:
        self._check_finite(path, scores, "scores")
        rate = self.card.sample_rate_hz
        return TagResult(path=str(path), labels=self.labels, scores=scores.mean(axis=0),
                         window_scores=scores, duration_s=duration_s,
                         window_s=self.card.window_samples / rate)

    def tag_many(self, paths: Iterable[str | os.PathLike], *,
                 on_progress: ProgressCallback | None = None,
                 ) -> Iterator[tuple[str | os.PathLike, TagResult | audio.AudioError]]:
        """``(path, result)`` for each file in order; a file that cannot be read, or whose scores
        are not finite (:class:`ModelOutputError`), gives its AudioError.

        Decoding runs on a background thread ahead of inference (module docstring); stopping
        the iteration early stops that thread too.
        """
        chunks: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        stop = threading.Event()
        decoder = threading.Thread(target=self._decode_into, args=(list(paths), chunks, stop),
                                   name="musictag-decode", daemon=True)
        decoder.start()
        files: OrderedDict[int, _FileScores] = OrderedDict()
        pending: deque[tuple[int, np.ndarray]] = deque()  # (file index, windows) to score
        finished = False
        try:
            while True:
                waiting = sum(len(windows) for _, windows in pending)
                if not finished and waiting < self.batch_size:
                    try:  # block only when there is nothing to score meanwhile
                        item = chunks.get(block=waiting == 0)
                    except queue.Empty:
                        item = None  # the decoder is behind: score the partial batch now
                    if isinstance(item, BaseException):
                        raise item
                    if item is _DONE:
                        finished = True
                    elif item is not None:
                        _receive(item, files, pending)
                    if item is not None:
                        yield from _finished(files, self._result)
                        continue
                if not pending:
                    break
                self._score_batch(pending, files, on_progress)
                yield from _finished(files, self._result)
        finally:
            stop.set()
            decoder.join()

    def _decode_into(self, paths: list, chunks: queue.Queue, stop: threading.Event) -> None:
        """The decode thread: each file's windows in chunks of up to one batch, then a marker."""

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    chunks.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for index, path in enumerate(paths):
                try:
                    windows = self.windows(path)
                    for batch in batched(windows, self.batch_size):
                        if not put(_Windows(index, path, batch)):
                            return
                    item: _Decoded = _Ended(index, path, windows.duration_s)
                except audio.AudioError as error:
                    item = _Failed(index, path, error)
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # an unexpected failure surfaces in the caller's thread
            put(error)

    def _score_batch(self, pending: deque[tuple[int, np.ndarray]], files: dict[int, _FileScores],
                     on_progress: ProgressCallback | None) -> None:
        """Score up to one batch from the front of ``pending``, whichever files it spans."""
        taken, owners, count = [], [], 0
        while pending and count < self.batch_size:
            index, windows = pending.popleft()
            part = windows[:self.batch_size - count]
            if len(part) < len(windows):
                pending.appendleft((index, windows[len(part):]))
            taken.append(part)
            owners.append((index, len(part)))
            count += len(part)
        scores = self.predict(np.concatenate(taken))
        start = 0
        for index, n in owners:
            state = files[index]
            state.scores.append(scores[start:start + n])
            state.unscored -= n
            start += n
        if on_progress:
            on_progress(count)


#: The decode thread's last item.
_DONE = object()


@dataclass(frozen=True)
class _Windows:
    """Decode thread -> caller: up to one batch of a file's windows."""

    index: int  # the file's place in the input
    path: str | os.PathLike
    windows: np.ndarray


@dataclass(frozen=True)
class _Ended:
    """Decode thread -> caller: the file is decoded to its end."""

    index: int
    path: str | os.PathLike
    duration_s: float


@dataclass(frozen=True)
class _Failed:
    """Decode thread -> caller: the file cannot be tagged; its queued windows are dropped."""

    index: int
    path: str | os.PathLike
    error: audio.AudioError


_Decoded = _Windows | _Ended | _Failed


@dataclass
class _FileScores:
    """One file in flight through :meth:`Tagger.tag_many`."""

    path: str | os.PathLike
    scores: list[np.ndarray] = field(default_factory=list)
    unscored: int = 0  # windows queued but not yet through the network
    duration_s: float | None = None  # set once the file is decoded to its end
    error: audio.AudioError | None = None


def _receive(item: _Decoded, files: OrderedDict[int, _FileScores],
             pending: deque[tuple[int, np.ndarray]]) -> None:
    """File the decode thread's item under its file's state, its windows in ``pending``."""
    state = files.setdefault(item.index, _FileScores(item.path))
    if isinstance(item, _Failed):
        state.error = item.error
        kept = [(i, w) for i, w in pending if i != item.index]
        pending.clear()
        pending.extend(kept)
    elif isinstance(item, _Ended):
        state.duration_s = item.duration_s
    else:
        pending.append((item.index, item.windows))
        state.unscored += len(item.windows)


def _finished(files: OrderedDict[int, _FileScores],
              result: Callable[[str | os.PathLike, np.ndarray, float], TagResult],
              ) -> Iterator[tuple]:
    """Pop the files at the front that are complete (all windows scored, or failed), in order."""
    while files:
        index, state = next(iter(files.items()))
        if state.error is None and (state.duration_s is None or state.unscored):
            return
        del files[index]
        outcome = state.error
        if outcome is None:
            try:
                outcome = result(state.path, np.concatenate(state.scores), state.duration_s)
            except ModelOutputError as error:
                outcome = error
        yield state.path, outcome


def shipped_onnx(card: ModelCard) -> Path | None:
    """The ONNX file the card names in ``weights["onnx"]``, when it is on this machine."""
    name = card.weights.get("onnx")
    if not name:
        return None
    path = (card.home or Path.cwd()) / name
    return path if path.is_file() else None


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def choose_backend(backend: str, *, device: str, precision: str, has_onnx: bool) -> str:
    """An explicit backend as given; ``auto`` is onnxruntime for fp32 and int8 on the CPU when the
    model has an ONNX file, torch otherwise (GPUs, bf16, models without an exported file).

    onnxruntime computes the same scores (to 1e-4, checked at export) faster than torch on a CPU
    (``benchmarks/throughput.py`` measures by how much) and needs no torch install. ``auto``
    precision is resolved before this (:func:`musictag.fastpath.choose_path`).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if precision == "int8":
        return "onnx"
    return "onnx" if has_onnx and device in ("auto", "cpu") and precision == "fp32" else "torch"


def _same_model(card: ModelCard, stored: ModelCard, path: str | os.PathLike) -> None:
    for fact in ("labels", "sample_rate_hz", "window_samples"):
        if getattr(card, fact) != getattr(stored, fact):
            raise ModelError(f"{path}: its {fact} differ from model {card.name!r}'s")


def _onnx_backend(path: str | os.PathLike, *, device: str, precision: str, threads: int):
    if device not in ("auto", "cpu"):
        raise ModelError(f"the onnx backend runs on the CPU; device {device!r} needs backend "
                         "'torch'")
    if precision == "bf16":
        raise ModelError("precision bf16 is a torch option; an ONNX file's precision is fixed "
                         "when it is exported")
    from .backends.onnx_backend import OnnxBackend

    return OnnxBackend(path, threads=threads)


def make_backend(card: ModelCard, weights_path: str | os.PathLike, *, backend: str = "torch",
                 device: str = "auto", precision: str = "fp32",
                 threads: int | None = None) -> Backend:
    """A ``torch`` backend over safetensors weights or an ``onnx`` one over an exported file."""
    threads = threads or default_threads()
    if backend == "onnx":
        return _onnx_backend(weights_path, device=device, precision=precision, threads=threads)
    if backend == "torch":
        if not torch_installed():
            raise ModelError(f"model {card.name!r} needs torch, which is not installed: "
                             f"pip install 'musictag[torch]', or tag with an ONNX export of it "
                             f"(weights=FILE.onnx)")
        import torch

        from .backends.torch_backend import TorchBackend

        torch.set_num_threads(threads)
        return TorchBackend(card, weights_path, device=device, precision=precision)
    raise ModelError(f"unknown backend {backend!r}")


def resolve_card(name: str | None, weights: str | os.PathLike | None) -> ModelCard:
    """The card a safetensors ``weights`` file stores when no ``name`` is given, else the named
    card (the default model when neither is)."""
    if weights is not None and name is None:
        _, stored = read_weights(weights)
        if stored is None:
            raise ModelError(f"{weights}: holds no model card; name the card")
        return ModelCard.from_dict(stored, home=Path(weights).resolve().parent)
    return get_card(name or DEFAULT_MODEL)


def load_tagger(name: str | None = None, *, weights: str | os.PathLike | None = None,
                device: str = "auto", batch_size: int = 16, backend: str = "auto",
                precision: str = "fp32", threads: int | None = None) -> Tagger:
    """A ready :class:`Tagger` for a card name (default model when None) or a weights file.

    ``weights`` alone uses the card stored inside the file (a ``.safetensors`` file or an
    exported ``.onnx`` file); with ``name`` too, the named card's preprocessing is applied to the
    given weights. ``precision`` ``auto`` with ``backend`` ``auto`` runs the fastest path measured
    accurate enough for this CPU (:mod:`musictag.fastpath`); ``fp32`` (the library's default)
    the exact path; ``backend`` is otherwise chosen by :func:`choose_backend`. ``threads``
    defaults to :func:`default_threads`. The choice and its reason are logged at INFO.
    """
    check_precision(precision)
    threads = threads or default_threads()
    options = {"device": device, "threads": threads}
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        if backend == "torch":
            raise ModelError(f"{weights}: an ONNX file runs on the onnx backend, not torch")
        engine = _onnx_backend(weights, precision=precision, **options)
        card = engine.card
        if name is not None:
            card = get_card(name)
            _same_model(card, engine.card, weights)
        return _ready(Tagger(card, engine, batch_size=batch_size, reason="the ONNX file given"))
    card = resolve_card(name, weights)
    onnx_path = shipped_onnx(card) if weights is None else None
    if precision == "auto" and backend == "auto" and weights is None and device in ("auto", "cpu"):
        choice = choose_path(card, flags=cpu_flags(), has_fp32_onnx=onnx_path is not None,
                             torch_ok=torch_installed())
    else:
        precision = "fp32" if precision == "auto" else precision
        chosen = choose_backend(backend, device=device, precision=precision,
                                has_onnx=onnx_path is not None)
        file = int8_file(card) if precision == "int8" else None
        choice = Choice(chosen, precision, file, "as asked")
    if choice.backend == "onnx":
        path = choice.file or onnx_path
        if path is None or not Path(path).is_file():
            what = "int8 " if choice.precision == "int8" else ""
            raise ModelError(f"model {card.name!r} has no {what}ONNX file on this machine; make "
                             f"one with `musictag export --onnx --model {card.name} -o FILE.onnx` "
                             f"and pass that file as the weights")
        engine = make_backend(card, path, backend="onnx", precision=choice.precision, **options)
    else:
        weights_path = weights if weights is not None else local_weights(card)
        engine = make_backend(card, weights_path, backend="torch", precision=choice.precision,
                              **options)
    return _ready(Tagger(card, engine, batch_size=batch_size, reason=choice.reason))


def _ready(tagger: Tagger) -> Tagger:
    log.info("model %s: %s backend, %s (%s)", tagger.card.name, tagger.backend.name,
             tagger.precision, tagger.reason)
    return tagger
