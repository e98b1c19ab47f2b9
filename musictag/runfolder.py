"""A run's folder: what ``musictag train`` and ``musictag distill`` keep to continue and to deliver.

``config.json`` is fixed when a run starts, ``checkpoint.pt`` holds the state to continue from
(:mod:`musictag.checkpoint`, written atomically), logs are CSV or JSON lines, and the result is a
model card with its weights, ``NAME.json`` + ``NAME.safetensors``, ready for
``musictag tag --model RUN/NAME.json``. Both commands follow the same rules, written here once:
a folder is never overwritten by a new run, a resumed run continues its stored configuration
(settings given again may repeat it, not change it), and an exported card has passed
:class:`~musictag.registry.ModelCard`'s checks.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import RunError
from .fileio import atomic_open
from .registry import ModelCard
from .weights import save_weights

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"


class RunConfig(Protocol):
    """A run's configuration: a dataclass that is stored as the plain dict it gives."""

    def to_dict(self) -> dict[str, Any]: ...


ConfigT = TypeVar("ConfigT", bound=RunConfig)


class RunFolder:
    """The files of one run in ``path``; every write is atomic or an append of whole lines."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def started(self) -> bool:
        """Whether a run was started here (its configuration is stored)."""
        return (self.path / CONFIG_FILE).exists()

    # --- configuration -----------------------------------------------------------------------

    def open_config(self, load: Callable[[dict[str, Any]], ConfigT],
                    given: Callable[[ConfigT | None], ConfigT] | None, *, resume: bool,
                    write: bool = True) -> ConfigT:
        """The run's configuration, stored in ``config.json`` when the run starts.

        ``load`` reads the stored dict (a field added since it was written takes its default);
        ``given(base)`` is the configuration the caller's settings describe over ``base``, the
        stored one on resume and None for a new run (None for ``given``: no settings, resume
        only). A started folder is resumed only when ``resume`` asks for it, and then only if
        ``given`` changes nothing: the error names the fields it would change, because a run
        continued with other settings would be neither the old run nor a new one. ``write``
        False (the other processes of a distributed run, which rank 0's write of a new
        ``config.json`` must not race) neither writes nor refuses a started folder: the writer
        does both.
        """
        path = self.path / CONFIG_FILE
        if self.started and resume:
            try:
                stored = load(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
                raise RunError(f"{path}: unreadable ({error})") from None
            if given is not None:
                current, wanted = stored.to_dict(), given(stored).to_dict()
                changed = sorted(key for key in wanted if wanted[key] != current.get(key))
                if changed:
                    raise RunError(f"{self.path}: resuming continues the stored configuration, "
                                   f"which these settings would change: {', '.join(changed)}")
            return stored
        if self.started and write:
            raise RunError(f"{self.path} already holds a run; resume it or choose another "
                           "run folder")
        if given is None:
            raise RunError(f"{self.path}: no run to resume ({CONFIG_FILE} missing)")
        config = given(None)
        if write:
            with atomic_open(path) as handle:
                json.dump(config.to_dict(), handle, indent=2)
        return config

    # --- checkpoint --------------------------------------------------------------------------

    def save_checkpoint(self, **state: Any) -> None:
        """:func:`musictag.checkpoint.save_checkpoint` into ``checkpoint.pt``."""
        save_checkpoint(self.path / CHECKPOINT_FILE, **state)

    def load_checkpoint(self, **targets: Any) -> dict[str, Any] | None:
        """:func:`musictag.checkpoint.load_checkpoint` from ``checkpoint.pt``; None before the
        first checkpoint, when the run starts from the beginning."""
        path = self.path / CHECKPOINT_FILE
        return load_checkpoint(path, **targets) if path.exists() else None

    # --- logs --------------------------------------------------------------------------------

    def append_row(self, name: str, row: dict[str, Any]) -> None:
        """Add one row to log ``name`` (CSV with a header from the first row's keys, or JSON
        lines). For logs of many rows: appending costs the same at the millionth step."""
        path = self.path / name
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            if name.endswith(".csv"):
                writer = csv.DictWriter(handle, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
            else:
                handle.write(json.dumps(row) + "\n")

    def write_rows(self, name: str, rows: Iterable[dict[str, Any]],
                   columns: Iterable[str] | None = None) -> None:
        """Replace log ``name`` with ``rows`` (CSV of ``columns``, or JSON lines), atomically.

        For a log whose rows are kept in the checkpoint: rewriting it from there keeps the log
        and the state it was continued from in step after any interruption.
        """
        buffer = io.StringIO()
        if name.endswith(".csv"):
            writer = csv.DictWriter(buffer, fieldnames=list(columns or []),
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        else:
            buffer.writelines(json.dumps(row) + "\n" for row in rows)
        with atomic_open(self.path / name, newline="") as handle:
            handle.write(buffer.getvalue())

    # --- result ------------------------------------------------------------------------------

    def export(self, card: ModelCard, state: dict[str, torch.Tensor]) -> Path:
        """Write ``state`` as ``NAME.safetensors`` (floating tensors as float32, the card
        inside) and the card as ``NAME.json``; returns the card's path.

        Taking a :class:`ModelCard` rather than a dict means a card that ``tag`` would refuse
        is refused here, when the run can still say why.
        """
        weights: dict[str, np.ndarray] = {
            key: (value.detach().cpu().float() if value.is_floating_point()
                  else value.detach().cpu()).numpy() for key, value in state.items()}
        data = card.to_dict()
        save_weights(self.path / card.weights["file"], weights, data)
        card_path = self.path / f"{card.name}.json"
        with atomic_open(card_path) as handle:
            json.dump(data, handle, indent=2)
        return card_path
