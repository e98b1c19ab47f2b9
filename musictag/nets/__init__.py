"""Every architecture musictag runs, trains or exports, built from a card's ``arch`` dict.

Importing this package registers all of them; tag, train, evaluate and export go through
:func:`build_model` only.
"""

from . import framelevel_mel, musicnn_tf, samplecnn, won2020  # noqa: F401  (registers them)
from .registry import architecture_names, build_model, config_from_dict, config_to_dict

__all__ = ["architecture_names", "build_model", "config_from_dict", "config_to_dict"]
