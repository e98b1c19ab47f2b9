"""The ``musicnn`` wheel's TF1 checkpoints -> state dicts of :mod:`musictag.nets.musicnn_tf`.

The checkpoints are read with :mod:`musictag.convert.tf_checkpoint`, a numpy-only reader of the
Saver V2 format, rather than by converting once with TensorFlow as an optional extra: the format
is small and stable, the reader is ~200 lines, and users then never install TensorFlow (whose
numpy and Python pins are what make the ``musicnn`` package hard to run today).

TF1's ``tf.compat.v1.layers`` names variables by creation order (``conv2d_5``,
``batch_normalization_9``...), so each architecture lists its torch modules in the order
``musicnn/models.py`` creates the TF layers; the converter pairs them up and then checks that
every model tensor of the checkpoint was used and every key and shape of the torch model filled.
Optimizer state (Adam slots, beta powers, the global step) is skipped.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..nets import build_model
from ..registry import ModelCard
from .tf_checkpoint import Checkpoint, CheckpointError

#: The converter's name in :data:`musictag.convert.CONVERTERS` and in the cards.
CONVERTER_NAME = "musicnn_tf"
_OPTIMIZER_TENSORS = ("beta1_power", "beta2_power", "global_step")

#: Per architecture: (TF layer, torch module, kind) in TF creation order.
_LAYERS: dict[str, list[tuple[str, str, str]]] = {
    "musicnn_tf": [
        ("batch_normalization", "input_norm", "norm"),
        ("conv2d", "timbral.0.conv", "conv2d"),
        ("batch_normalization_1", "timbral.0.norm", "norm"),
        ("conv2d_1", "timbral.1.conv", "conv2d"),
        ("batch_normalization_2", "timbral.1.norm", "norm"),
        *[item for i in range(3) for item in (
            (f"conv2d_{2 + i}", f"temporal.{i}.conv", "conv2d"),
            (f"batch_normalization_{3 + i}", f"temporal.{i}.norm", "norm"))],
        *[item for i in range(3) for item in (
            (f"conv2d_{5 + i}", f"midend.{i}.conv", "conv1d"),
            (f"batch_normalization_{6 + i}", f"midend.{i}.norm", "norm"))],
        ("batch_normalization_9", "pool_norm", "norm"),
        ("dense", "dense", "dense"),
        ("batch_normalization_10", "dense_norm", "norm"),
        ("dense_1", "output_layer", "dense"),
    ],
    "musicnn_vgg": [
        ("batch_normalization", "input_norm", "norm"),
        *[item for i in range(5) for item in (
            (f"{i + 1}CNN", f"convs.{i}", "conv2d"),
            (f"batch_normalization_{i + 1}", f"norms.{i}", "norm"))],
        ("dense", "output_layer", "dense"),
    ],
}


def _layer_tensors(read, tf_name: str, torch_name: str, kind: str) -> dict[str, np.ndarray]:
    if kind == "norm":
        return {f"{torch_name}.weight": read(f"{tf_name}/gamma"),
                f"{torch_name}.bias": read(f"{tf_name}/beta"),
                f"{torch_name}.running_mean": read(f"{tf_name}/moving_mean"),
                f"{torch_name}.running_var": read(f"{tf_name}/moving_variance"),
                f"{torch_name}.num_batches_tracked": np.zeros((), dtype=np.int64)}
    kernel = read(f"{tf_name}/kernel")
    if kind == "conv2d":  # TF (height, width, in, out) -> torch (out, in, height, width)
        weight = kernel.transpose(3, 2, 0, 1)
    elif kind == "conv1d":  # TF (frames, channels, 1, out) spans all channels: a 1-d conv
        weight = kernel[:, :, 0, :].transpose(2, 1, 0)
    else:  # dense: TF (in, out) -> torch (out, in)
        weight = kernel.T
    return {f"{torch_name}.weight": np.ascontiguousarray(weight),
            f"{torch_name}.bias": read(f"{tf_name}/bias")}


def checkpoint_to_state_dict(checkpoint: Checkpoint, arch: dict) -> dict[str, np.ndarray]:
    """The torch state dict of ``arch`` from an opened checkpoint; every tensor accounted for."""
    layers = _LAYERS.get(arch["name"])
    if layers is None:
        raise ModelError(f"no musicnn layer map for architecture {arch['name']!r}")
    used: set[str] = set()

    def read(name: str) -> np.ndarray:
        if name not in checkpoint.entries:
            raise CheckpointError(f"{checkpoint.prefix}: no tensor {name!r} (not a "
                                  f"{arch['name']} checkpoint?)")
        used.add(name)
        return checkpoint.read(name)

    state: dict[str, np.ndarray] = {}
    for tf_name, torch_name, kind in layers:
        state.update(_layer_tensors(read, tf_name, torch_name, kind))
    model_tensors = {name for name in checkpoint.names()
                     if "/Adam" not in name and name not in _OPTIMIZER_TENSORS}
    left_over = sorted(model_tensors - used)
    if left_over:
        raise CheckpointError(f"{checkpoint.prefix}: tensors left unconverted: "
                              f"{', '.join(left_over[:5])}")
    expected = {k: tuple(v.shape) for k, v in build_model(arch).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        wrong = sorted(set(expected.items()) ^ set(got.items()))
        raise CheckpointError(f"{checkpoint.prefix}: converted tensors do not fit "
                              f"{arch['name']}: {wrong[:5]}")
    return state


def _model_folder(source: Path, member: str) -> Path:
    """The checkpoint folder for ``member`` in an unpacked wheel, its package folder or itself."""
    for candidate in (source / member, source / Path(member).name, source):
        if (candidate / ".index").is_file():
            return candidate
    raise CheckpointError(f"{source}: no musicnn checkpoint {member!r} in this folder")


@contextmanager
def open_checkpoint(source: Path, member: str) -> Iterator[Checkpoint]:
    """The checkpoint ``member`` (``musicnn/MTT_vgg``) of the wheel or of an unpacked copy.

    A wheel's member is extracted to a temporary folder that lives as long as the context.
    """
    source = Path(source)
    if source.is_dir():
        yield Checkpoint(f"{_model_folder(source, member)}/")
        return
    if not zipfile.is_zipfile(source):
        raise CheckpointError(f"{source}: neither a wheel (zip) nor a folder")
    with tempfile.TemporaryDirectory(prefix="musictag-musicnn-") as folder, \
            zipfile.ZipFile(source) as wheel:
        prefix = member.rstrip("/") + "/"
        names = [name for name in wheel.namelist() if name.startswith(prefix)]
        if not names:
            raise CheckpointError(f"{source}: the wheel has no folder {member!r}")
        wheel.extractall(folder, members=names)
        yield Checkpoint(f"{Path(folder) / member}/")


def convert(source: Path, card: ModelCard) -> dict[str, np.ndarray]:
    """A card's state dict from the ``musicnn`` wheel (.whl) or an unpacked copy of it."""
    with open_checkpoint(source, card.weights["member"]) as checkpoint:
        return checkpoint_to_state_dict(checkpoint, card.arch)
