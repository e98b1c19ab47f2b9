"""Where a network runs and in which precision: one rule for tagging, training and distilling.

``resolve_device`` turns the ``device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a
``torch.device``; ``autocast_dtype`` turns the ``precision`` setting into the dtype of
``torch.autocast`` (None: plain fp32); ``autocast`` opens that context. Written once so that
``musictag tag``, ``train`` and ``distill`` accept the same values and refuse the same ones with
the same message.
"""

from __future__ import annotations

import logging

import torch

from .errors import ModelError

log = logging.getLogger(__name__)

#: Every precision setting; a caller may accept fewer (the torch backend: fp32 and bf16).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible; asking for CUDA without one is an error.

    The error is raised here, before any work, rather than by the first tensor moved there.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA GPU is available")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r} (auto, cpu or cuda)") from None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None means fp32 (no autocast).

    ``auto`` is bfloat16 (float16 where the GPU lacks it) on CUDA and fp32 on a CPU, where
    mixed precision only pays with bf16 instructions. fp16 needs CUDA: a CPU has no fp16 matrix
    units and no loss scaling is done there.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ModelError("precision fp16 needs a CUDA GPU; use bf16 on a CPU")
    if precision == "bf16" and device.type == "cpu" and not getattr(
            torch.cpu, "_is_avx512_bf16_supported", lambda: True)():
        log.warning("this CPU has no native bfloat16 instructions; bf16 autocast will be slow")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """``torch.autocast`` to ``dtype`` on ``device``'s kind, disabled for None (fp32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
