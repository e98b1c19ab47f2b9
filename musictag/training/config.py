"""A training run's configuration: the paper's recipe by default, every field overridable.

Defaults are section 4.2 of the paper: binary cross-entropy, SGD with Nesterov momentum 0.9,
learning rate 0.01 divided by 5 when the validation loss has not improved for 3 epochs, 4 times,
then stop; batch 23; dropout 0.5; one random 59049-sample segment per clip and epoch. A config file
(TOML or JSON, same field names) and ``--set FIELD=VALUE`` options override them; the result is
saved as ``config.json`` in the run folder, which is what ``--resume`` continues.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..device import PRECISIONS
from ..errors import RunError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    dataset: str = "mtat"
    data_dir: str = ""
    labels: str = ""  # labels.csv of --dataset folder
    n_tags: int = 0  # 0: the dataset's default (MTAT: 50 most frequent; folder: all)
    cache_dir: str = ""  # "": the user cache (see musictag.data.cache.default_cache_dir)
    workers: int = 2  # decoding processes of the preprocessing step
    name: str = ""  # of the resulting model card; "": "<architecture>-<dataset>"
    init: str = ""  # card (name or .json) whose weights start the run: fine-tuning
    #: Architecture fields; merged over the 3^9 SampleCNN (or over the --init card's architecture).
    #: With a "name" of another architecture, replaces it. n_classes follows the dataset.
    arch: dict[str, Any] = field(default_factory=dict)
    sample_rate_hz: int = 0  # 0: 22050 Hz, or the --init card's rate
    window_samples: int = 0  # 0: the architecture's input size
    averaging: dict[str, Any] = field(default_factory=dict)  # {}: consecutive windows
    batch_size: int = 23  # per process
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    lr_decay_factor: float = 5.0
    patience_epochs: int = 3
    max_lr_decays: int = 4
    max_epochs: int = 0  # 0: until the learning-rate schedule ends the run
    segments_per_clip: int = 1  # random segments drawn per training clip and epoch
    seed: int = 0
    precision: str = "auto"  # auto: mixed precision on CUDA, fp32 on CPU
    device: str = "auto"
    eval_batch_size: int = 32
    checkpoint_every_steps: int = 0  # 0: at the end of each epoch (and on Ctrl-C) only

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise RunError(f"precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise RunError(f"optimizer {self.optimizer!r}: choose {', '.join(OPTIMIZERS)}")
        if self.batch_size < 2:
            raise RunError("batch_size must be at least 2 (batch normalisation needs it)")
        for name in ("lr", "lr_decay_factor"):
            if getattr(self, name) <= 0:
                raise RunError(f"{name} must be positive")
        for name in ("patience_epochs", "segments_per_clip", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise RunError(f"{name} must be at least 1")
        if not self.data_dir:
            raise RunError("no data folder: data_dir is empty")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return merged(cls(), data)


def merged(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` with ``overrides`` applied; ``arch.FIELD`` keys and an ``arch`` table merge into
    the architecture. Unknown fields and values of the wrong type are errors."""
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = config.to_dict()
    for key, value in overrides.items():
        if key.startswith("arch."):
            values["arch"] = {**values["arch"], key[len("arch."):]: value}
            continue
        if key not in known:
            raise RunError(f"unknown training setting {key!r}; known: {', '.join(known)}")
        if key in ("arch", "averaging"):
            if not isinstance(value, dict):
                raise RunError(f"{key} must be a table of fields")
            replaces = key == "averaging" or value.get("name", values["arch"].get("name")) != \
                values["arch"].get("name")
            values[key] = dict(value) if replaces else {**values[key], **value}
            continue
        default = getattr(TrainConfig(), key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise RunError(f"{key} must be true or false, not {value!r}")
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, type(default)) or isinstance(value, bool):
            raise RunError(f"{key} must be a {type(default).__name__}, not {value!r}")
        values[key] = value
    return TrainConfig(**values)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Settings from a ``.toml`` or ``.json`` file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".toml":
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        else:
            data = json.loads(path.read_text())
    except OSError as error:
        raise RunError(f"{path}: cannot read ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({error})") \
            from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: must hold a table of settings")
    return data


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` strings; a VALUE that parses as JSON is taken as such, else as a string."""
    result = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise RunError(f"setting {assignment!r}: expected FIELD=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        result[key.strip()] = value
    return result
