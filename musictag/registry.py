"""Model cards: everything needed to run a model, kept as JSON files under ``models/``.

A card names the architecture config, the labels in output order, the sample rate, window length
and window-averaging rule, where the weights come from (shipped file, URL with checksum, or
Hugging Face repo at a pinned revision) and the licence. Preprocessing facts live here, never in
if/else chains over model names.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .audio import WindowRule
from .errors import ModelError

#: The model ``musictag tag`` uses when none is named.
DEFAULT_MODEL = "samplecnn"
#: Extra folders of cards (``os.pathsep``-separated): a user's own models, or the tests' tiny one.
EXTRA_CARDS_ENV = "MUSICTAG_MODELS"


def models_dir() -> Path:
    """Shipped cards: ``musictag/_models`` in a wheel, ``models/`` in a checkout."""
    packaged = Path(__file__).resolve().parent / "_models"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "models"


#: The JSON type every card field must have (an integer may be numpy's, but not a bool), and the
#: JSON names of those types for the error.
_JSON_NAMES = {str: "string", dict: "object", list: "array", numbers.Integral: "integer"}
_FIELD_TYPES: dict[str, type] = {
    "name": str, "arch": dict, "labels": list, "sample_rate_hz": numbers.Integral,
    "window_samples": numbers.Integral,
    "weights": dict, "averaging": dict, "description": str, "training_data": str, "source": str,
    "licence": str, "licence_notice": str, "reported": dict, "provenance": dict,
}


class UnknownModelError(ModelError, LookupError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown model {name!r}; known models: {', '.join(known)}")


@dataclass
class ModelCard:
    name: str
    arch: dict[str, Any]
    labels: list[str]
    sample_rate_hz: int
    window_samples: int
    weights: dict[str, Any]
    averaging: dict[str, Any] = field(default_factory=lambda: {"rule": "consecutive"})
    description: str = ""
    training_data: str = ""
    source: str = ""
    licence: str = ""
    licence_notice: str = ""
    reported: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Folder of the card file; relative weight paths are resolved against it. Not serialised.
    home: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, home: Path | None = None) -> ModelCard:
        """A card from its JSON; ``ValueError`` names what is missing or of the wrong type.

        Cards come from users too (``--model my.json``), so a bad one must give that one line,
        not a ``TypeError`` from the constructor or later from the model builder.
        """
        if not isinstance(data, dict):
            raise ModelError(f"a model card is a JSON object, not {type(data).__name__}")
        name = data.get("name", "?")
        unknown = sorted(set(data) - set(_FIELD_TYPES))
        if unknown:
            raise ModelError(f"model card {name!r} has unknown field(s) {', '.join(unknown)}")
        missing = [f.name for f in fields(cls) if f.name in _FIELD_TYPES and f.name not in data
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ModelError(f"model card {name!r} lacks field(s) {', '.join(missing)}")
        for key, value in data.items():
            wanted = _FIELD_TYPES[key]
            if not isinstance(value, wanted) or (wanted is numbers.Integral
                                                 and isinstance(value, bool)):
                shown = json.dumps(value, default=str)[:40]
                raise ModelError(f"model card {name!r}: {key} must be a JSON "
                                 f"{_JSON_NAMES[wanted]}, not {shown}")
        if not all(isinstance(label, str) for label in data["labels"]):
            raise ModelError(f"model card {name!r}: labels must be strings")
        if data["sample_rate_hz"] <= 0 or data["window_samples"] <= 0:
            raise ModelError(f"model card {name!r}: sample_rate_hz and window_samples must be "
                             "positive")
        card = cls(**data, home=home)
        if len(card.labels) != card.arch.get("n_classes", len(card.labels)):
            raise ModelError(f"model card {card.name!r}: {len(card.labels)} labels for "
                             f"{card.arch['n_classes']} outputs")
        WindowRule.from_dict(card.averaging)
        return card

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ModelCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelError(f"{path}: not a readable model card ({error})") from None
        return cls.from_dict(data, home=path.resolve().parent)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("home")
        return data

    @property
    def window_rule(self) -> WindowRule:
        return WindowRule.from_dict(self.averaging)


def card_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(EXTRA_CARDS_ENV, "").split(os.pathsep) if p]
    return [models_dir(), *extra]


def available_models() -> list[ModelCard]:
    """Every card shipped with the package or in :data:`EXTRA_CARDS_ENV` folders, by name."""
    return sorted((ModelCard.from_file(p) for folder in card_dirs() for p in folder.glob("*.json")),
                  key=lambda card: card.name)


def card_reference(name_or_path: str) -> str:
    """A card file as an absolute path, so that a run resumed from another folder still finds
    it; a model name as it is."""
    path = Path(name_or_path)
    return str(path.resolve()) if path.suffix == ".json" or path.exists() else name_or_path


def get_card(name_or_path: str) -> ModelCard:
    """A shipped card by name, or any card file by path (the output of ``train`` or ``distill``)."""
    if name_or_path.endswith(".json") and Path(name_or_path).is_file():
        return ModelCard.from_file(name_or_path)
    cards = available_models()
    for card in cards:
        if card.name == name_or_path:
            return card
    raise UnknownModelError(name_or_path, [card.name for card in cards])
