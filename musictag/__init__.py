"""musictag: music auto-tagging from raw waveforms with sample-level deep CNNs.

The public API is :func:`load_tagger` and :class:`Tagger`; both import no torch until a torch
backend is asked for.
"""

from .inference import Tagger, TagResult, load_tagger
from .registry import available_models, get_card

__version__ = "0.1.0"
__all__ = ["TagResult", "Tagger", "available_models", "get_card", "load_tagger"]
