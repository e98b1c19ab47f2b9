"""The ``ray`` engine: files tagged by a pool of Ray actors, records streamed back to the driver.

The file list becomes a Ray Dataset of ``(index, path)`` rows in blocks of ``files_per_batch``
files. ``map_batches`` hands each block to an actor of a fixed pool
(:class:`ray.data.ActorPoolStrategy`; Ray 2.60 deprecates ``concurrency=``): the actor
loaded the tagger once and runs the local pipeline on the block (:meth:`Tagger.tag_many`, decode
in a thread beside inference), so a record is the same one the local engine makes. The driver
reads the rows as blocks finish (``iter_rows`` streams) and does what needs the whole run in one
place: the results log, the output formats, tags written into the files (cli/tag.py). So
``--resume`` and ``--retry-failed`` see the same log whichever engine wrote it.

Actors open files by absolute path: every node of a cluster must see the files at the same paths
(a shared or network file system), and have musictag installed. The driver's ``MUSICTAG_*`` and
``HF_HUB_OFFLINE`` settings are passed to the actors, so a card folder or an offline cache set
where the command runs also holds on the nodes.

Ray is imported lazily: this module loads without it, and the functions raise
:class:`EngineError` with the install line when it is missing.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio import AudioError
from ..errors import RunError
from ..fileio import json_dumps
from ..hub import CACHE_ENV, HF_OFFLINE_ENV
from ..inference import load_tagger
from ..library.embed import embed_files
from ..output import tag_records
from ..registry import EXTRA_CARDS_ENV

if TYPE_CHECKING:
    import pyarrow
    import ray.data

#: Files per block, and so per actor call: small enough that a killed run loses little work
#: (a block's records reach the log only when the block is done) and that records stream out
#: steadily; large enough that an actor call's overhead (milliseconds) is small beside the
#: seconds that tagging 8 tracks takes.
FILES_PER_BATCH = 8
#: CPUs per actor when not given: like the SLURM recipe's --cpus-per-task, 4 compute threads keep
#: a SampleCNN batch busy while one process's memory (torch, the model) serves 4 cores.
DEFAULT_CPUS_PER_ACTOR = 4
#: Settings of the driver's environment the actors need to find the same model.
FORWARDED_ENV = (EXTRA_CARDS_ENV, CACHE_ENV, HF_OFFLINE_ENV)


class EngineError(RunError, RuntimeError):
    """Ray is missing, unreachable, or the run failed as a whole; ``str()`` is one line."""


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise EngineError("the ray engine needs Ray: pip install 'musictag[ray]'") from None
    return ray


def connect(address: str | None = None, *, logging_level: int = logging.WARNING) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://HOST:10001``, ``HOST:6379``), or start a
    local Ray on this machine without one; nothing when this process is already connected.

    Called before any work, so a wrong address fails before a log is opened or cut. The actors'
    own output is not forwarded (``log_to_driver=False``): a file's failure comes back as its
    row's ``error``, and stderr is the caller's. ``logging_level`` is Ray's loggers' level.
    """
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging_level)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EngineError(f"cannot start or join {where} ({error})") from None


def _absolute_model(model: str | None) -> str | None:
    """A card file given by a relative path, made absolute for actors with another folder."""
    if model is not None and model.endswith(".json") and Path(model).is_file():
        return os.path.abspath(model)
    return model


def _load_options(model: str | None, weights: str | os.PathLike | None,
                  cpus_per_actor: float, options: dict[str, Any]) -> dict[str, Any]:
    """``load_tagger`` keywords for an actor: absolute paths, and as many compute threads as
    the actor has CPUs (the default, every core of the node, would oversubscribe it)."""
    return {"name": _absolute_model(model),
            "weights": None if weights is None else os.path.abspath(weights),
            **options, "threads": options.get("threads") or max(1, int(cpus_per_actor))}


class TagActor:
    """A pool member of :func:`ray_tag`: the tagger loaded once, then batches of files tagged.

    Called with a numpy batch ``{"index", "path"}`` (paths as file-system bytes, so names that
    are not UTF-8 arrive intact); returns the rows of :func:`ray_tag`.
    """

    def __init__(self, load: dict[str, Any], top_k: int | None,
                 thresholds: float | dict[str, float] | None, all_scores: bool):
        self.tagger = load_tagger(**load)
        self.select = {"top_k": top_k, "thresholds": thresholds}
        self.all_scores = all_scores

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        paths = [os.fsdecode(path) for path in batch["path"]]
        outcomes = tag_records(self.tagger, paths, all_scores=self.all_scores, **self.select)
        records, errors = [], []
        for _, outcome in outcomes:
            failed = isinstance(outcome, AudioError)
            records.append(None if failed else json_dumps(outcome))
            errors.append(outcome.reason if failed else None)
        return _rows(batch, paths, record=records, error=errors)


class EmbedActor:
    """A pool member of :func:`ray_embed`: like :class:`TagActor`, for embeddings."""

    def __init__(self, load: dict[str, Any]):
        self.tagger = load_tagger(**load)

    def __call__(self, batch: dict[str, np.ndarray]) -> pyarrow.Table:
        paths = [os.fsdecode(path) for path in batch["path"]]
        vectors, n_windows, errors = [], [], []
        for _, outcome in embed_files(self.tagger, paths):
            failed = isinstance(outcome, AudioError)
            array = None if failed else np.ascontiguousarray(outcome, dtype=np.float32)
            vectors.append(None if failed else array.tobytes())
            n_windows.append(None if failed else len(array))
            errors.append(outcome.reason if failed else None)
        return _rows(batch, paths, vectors=vectors, n_windows=n_windows, error=errors)


def _rows(batch: dict[str, np.ndarray], paths: list[str], **columns: list) -> pyarrow.Table:
    """A block of output rows with an explicit schema, so that a block whose files all failed
    (all nulls) has the same column types as the others."""
    import pyarrow as pa

    types = {"record": pa.string(), "error": pa.string(), "vectors": pa.binary(),
             "n_windows": pa.int64()}
    shown = [path.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for path in paths]
    arrays = {"index": pa.array(batch["index"], pa.int64()), "path": pa.array(shown, pa.string())}
    arrays.update({name: pa.array(values, types[name]) for name, values in columns.items()})
    return pa.table(arrays)


def _plan(n_files: int, actors: int | None, cpus_per_actor: float | None,
          files_per_batch: int) -> tuple[int, float]:
    """Actors and CPUs per actor: by default as many actors of up to 4 CPUs as the cluster's
    CPUs hold, and never more actors than there are blocks (an idle actor still loads a model)."""
    total = _ray().cluster_resources().get("CPU", 1.0)
    cpus = cpus_per_actor or min(float(DEFAULT_CPUS_PER_ACTOR), total)
    count = actors or max(1, int(total // cpus))
    return max(1, min(count, math.ceil(n_files / files_per_batch))), cpus


def _dataset(paths: Sequence[str | os.PathLike], actor: type, constructor: dict[str, Any], *,
             actors: int, cpus_per_actor: float, files_per_batch: int) -> ray.data.Dataset:
    ray = _ray()
    items = [{"index": index, "path": os.fsencode(os.path.abspath(path))}
             for index, path in enumerate(paths)]
    if not items:
        raise RunError("no files to tag")
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    source = ray.data.from_items(items,
                                 override_num_blocks=math.ceil(len(items) / files_per_batch))
    return source.map_batches(actor, fn_constructor_kwargs=constructor, batch_size=None,
                              batch_format="numpy", num_cpus=cpus_per_actor,
                              compute=ray.data.ActorPoolStrategy(size=actors),
                              runtime_env={"env_vars": env} if env else None)


def ray_tag(paths: Sequence[str | os.PathLike], *, model: str | None = None,
            weights: str | os.PathLike | None = None, top_k: int | None = 5,
            thresholds: float | dict[str, float] | None = None, all_scores: bool = False,
            actors: int | None = None, cpus_per_actor: float | None = None,
            files_per_batch: int = FILES_PER_BATCH, **options: Any) -> ray.data.Dataset:
    """The files' tags as a lazy Ray Dataset, one row per file, in no particular order.

    Columns: ``index`` (the file's position in ``paths``), ``path`` (absolute; bytes that are not
    UTF-8 shown as U+FFFD), ``record`` (the JSON line ``musictag tag --format jsonl`` writes for
    the file, with the absolute path) and ``error`` (why the file could not be tagged), one of
    the two null. ``options`` go to :func:`musictag.load_tagger` in each actor (``device``,
    ``batch_size``, ``backend``, ``precision``, ``threads``). Connects first (:func:`connect`)
    unless this process already is; compose the result further, e.g. ``.write_parquet(...)``.
    """
    connect()
    actors, cpus = _plan(len(paths), actors, cpus_per_actor, files_per_batch)
    constructor = {"load": _load_options(model, weights, cpus, options), "top_k": top_k,
                   "thresholds": thresholds, "all_scores": all_scores}
    return _dataset(paths, TagActor, constructor, actors=actors, cpus_per_actor=cpus,
                    files_per_batch=files_per_batch)


def ray_embed(paths: Sequence[str | os.PathLike], *, model: str | None = None,
              weights: str | os.PathLike | None = None, actors: int | None = None,
              cpus_per_actor: float | None = None, files_per_batch: int = FILES_PER_BATCH,
              **options: Any) -> ray.data.Dataset:
    """The files' penultimate-layer window vectors as a lazy Ray Dataset, one row per file.

    Columns ``index``, ``path`` and ``error`` as in :func:`ray_tag`; ``vectors`` (float32
    ``(n_windows, embedding_size)`` as row-major bytes: ``np.frombuffer(v, np.float32)
    .reshape(n_windows, -1)``) and ``n_windows``, null for a file that failed.
    """
    connect()
    actors, cpus = _plan(len(paths), actors, cpus_per_actor, files_per_batch)
    return _dataset(paths, EmbedActor, {"load": _load_options(model, weights, cpus, options)},
                    actors=actors, cpus_per_actor=cpus, files_per_batch=files_per_batch)


def _stream(dataset: ray.data.Dataset) -> Iterator[dict[str, Any]]:
    """The dataset's rows as its blocks finish; a failure of the run as a whole (an actor that
    cannot load the model, a lost node past Ray's retries) becomes one :class:`EngineError`."""
    ray = _ray()
    try:
        yield from dataset.iter_rows()
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise EngineError(f"the ray run failed: {lines[-1]}") from None


def tag_outcomes(paths: Sequence[Path], **options: Any,
                 ) -> Iterator[tuple[Path, dict[str, Any] | AudioError]]:
    """``(path, record or AudioError)`` per file as the actors finish them: what the local
    engine's :func:`musictag.output.tag_records` gives, in completion order. ``options`` are
    :func:`ray_tag`'s. The record's path is the path as given (as the local engine writes it),
    so that logs of either engine resume each other."""
    for row in _stream(ray_tag(paths, **options)):
        path = paths[row["index"]]
        if row["error"] is not None:
            yield path, AudioError(path, row["error"])
        else:
            yield path, {**json.loads(row["record"]), "path": str(path)}


def embed_outcomes(paths: Sequence[Path], **options: Any,
                   ) -> Iterator[tuple[Path, np.ndarray | AudioError]]:
    """``(path, window vectors or AudioError)`` per file as the actors finish them, like
    :func:`musictag.library.embed.embed_files`; ``options`` are :func:`ray_embed`'s."""
    for row in _stream(ray_embed(paths, **options)):
        path = paths[row["index"]]
        if row["error"] is not None:
            yield path, AudioError(path, row["error"])
        else:
            yield path, np.frombuffer(row["vectors"], np.float32).reshape(row["n_windows"], -1)
