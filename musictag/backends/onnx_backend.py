"""The onnxruntime backend: tags with an exported ``.onnx`` file alone, without importing torch.

An exported file is self-describing: ``musictag export --onnx`` stores the whole model card in the
ONNX ``metadata_props`` (with its main facts as separate keys for other tools), and the graph has
two outputs, ``scores`` (sigmoid probabilities) and ``embedding`` (the penultimate layer), so tag,
embed and similar all work from the file. onnxruntime reads the metadata, so the ``onnx`` package
is not needed here either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..registry import ModelCard

INPUT_NAME = "waveform"
SCORES_OUTPUT = "scores"
EMBEDDING_OUTPUT = "embedding"
#: metadata_props keys; ``musictag_card`` holds the whole card, the others repeat its main facts.
CARD_KEY = "musictag_card"
PRECISION_KEY = "musictag_precision"
FACT_KEYS = ("name", "labels", "sample_rate_hz", "window_samples", "averaging")


def read_card(session: ort.InferenceSession, path: str | os.PathLike) -> ModelCard:
    """The card stored in an exported file's metadata; a one-line error for other ONNX files."""
    stored = session.get_modelmeta().custom_metadata_map.get(CARD_KEY)
    if stored is None:
        raise ValueError(f"{path}: holds no musictag model card; export it with "
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
        # needs a core (on 2 cores, one of the two), and measured on the 3^9 model the batch
        # rate is no lower without spinning (22.6 against 21.6 windows/s at batch 16).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            reason = str(error).strip().splitlines()[0] if str(error).strip() else error
            raise ValueError(f"{path}: not a loadable ONNX model ({reason})") from None
        self.path = Path(path)
        self.card = read_card(self.session, path)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.precision = metadata.get(PRECISION_KEY, "fp32")

    def _run(self, output: str, windows: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(windows, dtype=np.float32)
        return self.session.run([output], {INPUT_NAME: batch})[0]

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self._run(SCORES_OUTPUT, windows)

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return self._run(EMBEDDING_OUTPUT, windows)
