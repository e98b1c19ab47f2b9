"""The table of architectures: one name per model family, built from a plain-dict config.

Cards store an architecture as ``{"name": ..., **config fields}`` so that weights never carry
pickled classes; this table turns such a dict back into a module. Every command (tag, train,
evaluate, export) goes through :func:`build_model`, so an architecture exists in exactly one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import ModelError

_ARCHITECTURES: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {}

ConfigT = TypeVar("ConfigT")


def register_architecture(name: str, config_class: type[ConfigT]) -> Callable:
    """Class decorator: make ``name`` buildable from a dict of ``config_class`` fields."""

    def decorate(model_class: Callable[[ConfigT], nn.Module]) -> Callable[[ConfigT], nn.Module]:
        if name in _ARCHITECTURES:
            raise ModelError(f"architecture {name!r} registered twice")
        _ARCHITECTURES[name] = (config_class, model_class)
        return model_class

    return decorate


def architecture_names() -> list[str]:
    return sorted(_ARCHITECTURES)


def config_from_dict(arch: dict[str, Any]) -> Any:
    """The typed config of ``arch`` (a card's ``arch`` entry); unknown fields are an error."""
    fields = dict(arch)
    name = fields.pop("name", None)
    if name not in _ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(architecture_names())}")
    config_class, _ = _ARCHITECTURES[name]
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelError(f"architecture {name!r} has no field(s) {', '.join(unknown)}")
    for field in dataclasses.fields(config_class):
        if field.name in fields and isinstance(fields[field.name], list):
            fields[field.name] = tuple(fields[field.name])
    return config_class(**fields)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready form of a config, tagged with its architecture name."""
    for name, (config_class, _) in _ARCHITECTURES.items():
        if type(config) is config_class:
            return {"name": name, **{k: list(v) if isinstance(v, tuple) else v
                                     for k, v in dataclasses.asdict(config).items()}}
    raise ModelError(f"{type(config).__name__} is not a registered architecture config")


def build_model(arch: dict[str, Any] | Any) -> nn.Module:
    """A freshly initialised module for a card's ``arch`` dict (or a typed config)."""
    config = config_from_dict(arch) if isinstance(arch, dict) else arch
    for config_class, model_class in _ARCHITECTURES.values():
        if type(config) is config_class:
            return model_class(config)
    raise ModelError(f"{type(config).__name__} is not a registered architecture config")
