"""Which path tags fastest on this CPU, among those measured accurate enough on real music.

``--backend auto --precision auto`` (``musictag tag``'s default) runs, in this order of
preference, the first path that this CPU accelerates *and* that a recorded measurement shows
within :data:`BOUNDS` of the exact fp32 path on real tracks:

- ``bf16``: torch in the channels-last conv2d form (:func:`musictag.nets.use_bf16_form`), on CPUs
  with AMX (``amx_bf16``/``amx_tile``): there its convolutions reach the AMX matmul rate; without
  AMX bf16 is no faster than onnxruntime fp32 (docs/performance.md);
- ``int8``: the card's int8 ONNX file (``<name>-int8.onnx``, or the card's ``weights["int8"]``), on
  CPUs with VNNI (``avx512_vnni``/``avx_vnni``);
- ``fp32``: the exact path (onnxruntime when the card ships an ONNX file, else torch).

A measurement is a fact written by ``musictag verify-paths`` into ``verified/<name>.json`` beside
the card (:func:`write_check`), tied to the digest of the fp32 weights it was compared with (and,
for int8, to the digest of the int8 file measured): new weights or a re-exported file make the
record stale, and stale or missing records mean fp32. Nothing here is a guess about a model.

The CPU's flags come from ``/proc/cpuinfo`` (:func:`cpu_flags`); tests inject their own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .errors import ModelError
from .registry import ModelCard

#: Accuracy bounds a path must meet against fp32 on real tracks (issue 22).
MIN_TOP5_SAME = 0.95  # fraction of tracks whose top-5 tag set is fp32's
MAX_TRACK_DIFF = 0.02  # largest |score - fp32 score| over every track and tag
MIN_TRACKS = 10  # fewer tracks measure too little to decide on
BOUNDS = {"min_top5_same": MIN_TOP5_SAME, "max_track_diff": MAX_TRACK_DIFF,
          "min_tracks": MIN_TRACKS}
#: Faster precisions, in order of preference, and the CPU flags that make each fast.
ACCELERATED_BY = {"bf16": ({"amx_bf16", "amx_tile"}, all),
                  "int8": ({"avx512_vnni", "avx_vnni"}, any)}
PRECISIONS = ("auto", "fp32", "bf16", "int8")
VERIFIED_DIR = "verified"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The first ``flags`` line of ``/proc/cpuinfo`` (or of ``cpuinfo``); empty where there is
    none (macOS, Windows): then only fp32 is chosen."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def accelerated(flags: frozenset[str]) -> list[str]:
    """The faster precisions this CPU has instructions for, preferred first."""
    return [precision for precision, (needed, test) in ACCELERATED_BY.items()
            if test(flag in flags for flag in needed)]


@dataclass(frozen=True)
class PathCheck:
    """One path's scores against fp32 on the same windows of real tracks (track = mean of its
    windows, as tagging scores it)."""

    precision: str
    n_tracks: int
    top5_same: float
    max_track_diff: float
    mean_track_diff: float
    weights_sha256: str  # the fp32 tensors compared with (the safetensors digest)
    file: str | None = None  # int8: the ONNX file measured, relative to the card's folder
    file_sha256: str | None = None  # int8: its graph-and-weights digest
    measured_on: str = ""  # CPU model and date
    command: str = ""

    def within_bounds(self) -> bool:
        return (self.n_tracks >= MIN_TRACKS and self.top5_same >= MIN_TOP5_SAME
                and self.max_track_diff <= MAX_TRACK_DIFF)

    def describe(self) -> str:
        return (f"{self.precision}: same top-5 on {100 * self.top5_same:.0f}% of "
                f"{self.n_tracks} tracks, max track-score diff {self.max_track_diff:.4f}")

    @classmethod
    def from_dict(cls, data: dict) -> PathCheck:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def record_path(card: ModelCard) -> Path:
    return (card.home or Path.cwd()) / VERIFIED_DIR / f"{card.name}.json"


def read_checks(card: ModelCard) -> dict[str, PathCheck]:
    """The card's recorded measurements by precision; none when there is no readable record."""
    try:
        data = json.loads(record_path(card).read_text())
        return {name: PathCheck.from_dict(check) for name, check in data["paths"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_check(card: ModelCard, check: PathCheck) -> Path:
    """Add or replace one precision's measurement in the card's record."""
    path = record_path(card)
    data = {"card": card.name, "bounds": BOUNDS,
            "paths": {name: asdict(old) for name, old in read_checks(card).items()}}
    data["paths"][check.precision] = asdict(check)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def int8_file(card: ModelCard) -> Path:
    """The card's int8 ONNX file: ``weights["int8"]``, or else ``<name>-int8.onnx``."""
    return (card.home or Path.cwd()) / card.weights.get("int8", f"{card.name}-int8.onnx")


def shipped_weights_digest(card: ModelCard) -> str | None:
    """The tensor digest in the header of the card's local safetensors file (no tensors read)."""
    name = card.weights.get("file")
    if not name:
        return None
    try:
        with open((card.home or Path.cwd()) / name, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size)) if 0 < size < 1 << 24 else {}
    except (OSError, ValueError):
        return None
    from .weights import DIGEST_METADATA_KEY

    return (header.get("__metadata__") or {}).get(DIGEST_METADATA_KEY)


def onnx_file_digest(path: str | os.PathLike) -> str | None:
    from .backends.onnx_backend import model_digest  # reads protobuf; imports no torch

    try:
        return model_digest(Path(path).read_bytes())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Choice:
    """The path chosen: backend, precision, the file it runs (None: the card's weights) and why."""

    backend: str
    precision: str
    file: Path | None
    reason: str


def choose_path(card: ModelCard, *, flags: frozenset[str], has_fp32_onnx: bool,
                torch_ok: bool, checks: dict[str, PathCheck] | None = None) -> Choice:
    """The fastest verified path (module docstring); fp32 whenever nothing faster qualifies."""
    checks = read_checks(card) if checks is None else checks
    fp32 = "onnx" if has_fp32_onnx else "torch"
    notes = []
    faster = accelerated(flags)
    if not faster:
        notes.append("this CPU has neither AMX nor VNNI")
    digest = shipped_weights_digest(card) if checks else None
    for precision in faster:
        check = checks.get(precision)
        why = _unusable(card, precision, check, digest, torch_ok)
        if why is None:
            backend = "torch" if precision == "bf16" else "onnx"
            file = int8_file(card) if precision == "int8" else None
            return Choice(backend, precision, file,
                          f"fastest verified path on this CPU ({check.describe()})")
        notes.append(f"{precision} not used: {why}")
    return Choice(fp32, "fp32", None, "; ".join(notes) or "fp32")


def _unusable(card: ModelCard, precision: str, check: PathCheck | None, digest: str | None,
              torch_ok: bool) -> str | None:
    """Why a faster path may not run, or None when it may."""
    if check is None:
        return f"no accuracy measurement recorded in {record_path(card)}"
    if not check.within_bounds():
        return f"measured outside the bounds ({check.describe()})"
    if digest is None or check.weights_sha256 != digest:
        return "the measurement was made with other weights"
    if precision == "bf16" and not torch_ok:
        return "torch is not installed"
    if precision == "int8":
        path = int8_file(card)
        if not path.is_file():
            return f"{path} is missing"
        if onnx_file_digest(path) != check.file_sha256:
            return f"{path} is not the file measured"
    return None


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
