"""The onnxruntime backend: tags with an exported ``.onnx`` file alone, without importing torch.

An exported file is self-describing: ``musictag export --onnx`` stores the whole model card in the
ONNX ``metadata_props`` (with its main facts as separate keys for other tools), and the graph has
two outputs, ``scores`` (sigmoid probabilities) and ``embedding`` (the penultimate layer), so tag,
embed and similar all work from the file. onnxruntime reads the metadata, so the ``onnx`` package
is not needed here either.

The export also stores :func:`model_digest` under ``musictag_model_sha256``, and loading checks
it: onnxruntime runs a file with a flipped byte inside a weight as readily as a sound one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ModelError, first_line
from ..protobuf import fields
from ..registry import ModelCard
from ..weights import CorruptWeightsError, warn_once_without_digest

INPUT_NAME = "waveform"
SCORES_OUTPUT = "scores"
EMBEDDING_OUTPUT = "embedding"
#: metadata_props keys; ``musictag_card`` holds the whole card, the others repeat its main facts.
CARD_KEY = "musictag_card"
PRECISION_KEY = "musictag_precision"
FACT_KEYS = ("name", "labels", "sample_rate_hz", "window_samples", "averaging")
DIGEST_KEY = "musictag_model_sha256"
_METADATA_PROPS_FIELD = 14  # ModelProto.metadata_props, the one field the digest leaves out
#: Most windows one ``session.run`` computes: a larger batch is run in slices of this many.
#: onnxruntime keeps every intermediate of a run alive at once (the 3^9 SampleCNN: ~25 MB a
#: window), so the slice, not the batch or the file, bounds the memory; 8 costs no speed
#: (docs/performance.md, "Memory").
RUN_WINDOWS = 8


def model_digest(serialized: bytes) -> str:
    """``sha256:<hex>`` of a serialized ONNX ModelProto's fields, all but ``metadata_props``.

    The digest covers the graph (nodes and initializers), opsets and functions, and can live in
    the metadata it leaves out. It reads the protobuf wire format directly, so checking a file
    needs neither the ``onnx`` package nor torch.
    """
    digest = hashlib.sha256()
    data = memoryview(serialized)
    for field in fields(data):
        if field.number != _METADATA_PROPS_FIELD:
            digest.update(data[field.start:field.end])
    return f"sha256:{digest.hexdigest()}"


def check_digest(path: str | os.PathLike, stored: str | None) -> None:
    """Raise :class:`CorruptWeightsError` unless the file matches the digest it stores.

    A file without one (exported by an older musictag) loads with a one-time warning.
    """
    if stored is None:
        warn_once_without_digest(path, "graph and weights")
        return
    try:
        actual = model_digest(Path(path).read_bytes())
    except ValueError:
        actual = None
    if actual != stored:
        raise CorruptWeightsError(f"{path}: corrupted: its graph and weights do not match the "
                                  f"digest stored in it; export it again or replace the file")


def read_card(session: ort.InferenceSession, path: str | os.PathLike) -> ModelCard:
    """The card stored in an exported file's metadata; a one-line error for other ONNX files."""
    stored = session.get_modelmeta().custom_metadata_map.get(CARD_KEY)
    if stored is None:
        raise ModelError(f"{path}: holds no musictag model card; export it with "
                         f"`musictag export --onnx`")
    return ModelCard.from_dict(json.loads(stored), home=Path(path).resolve().parent)


class OnnxBackend:
    """One onnxruntime session on the CPU; ``session.run`` releases the GIL while it computes."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle compute threads sleep instead of spinning: between batches the decode thread
        # needs a core, which a spinning thread would hold; the batch rate is no lower without
        # spinning (docs/default-model.md, "Measured: the onnx backend").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The arena reuses the buffers of one run for the next; a memory pattern would plan and
        # keep one more set of buffers for every batch shape seen (a file's last partial batch
        # is a new shape), which raised the peak by half for no measurable speed.
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: not a loadable ONNX model ({first_line(error)})") from None
        self.path = Path(path)
        self.card = read_card(self.session, path)
        metadata = self.session.get_modelmeta().custom_metadata_map
        check_digest(path, metadata.get(DIGEST_KEY))
        self.precision = metadata.get(PRECISION_KEY, "fp32")

    def _run(self, output: str, windows: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(windows, dtype=np.float32)
        if len(batch) <= RUN_WINDOWS:
            return self.session.run([output], {INPUT_NAME: batch})[0]
        return np.concatenate([self.session.run([output], {INPUT_NAME: batch[i:i + RUN_WINDOWS]})[0]
                               for i in range(0, len(batch), RUN_WINDOWS)])

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self._run(SCORES_OUTPUT, windows)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return self._run(EMBEDDING_OUTPUT, windows)
