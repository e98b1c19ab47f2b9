"""Tagging beyond one machine: the file list as a Ray Dataset scored by a pool of actors.

Ray is an extra (``pip install 'musictag[ray]'``) and is imported only when one of these functions
runs, so ``import musictag.scale`` costs nothing without it.
"""

from .ray_engine import EngineError, connect, embed_outcomes, ray_embed, ray_tag, tag_outcomes

__all__ = ["EngineError", "connect", "embed_outcomes", "ray_embed", "ray_tag", "tag_outcomes"]
