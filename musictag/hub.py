"""Where a card's weights are on this machine, and how they get there.

Weights are shipped with the package, or fetched into the user cache: ``pull`` downloads the
upstream file named by the card (a URL pinned to a commit, or a Hugging Face repo at a pinned
revision), verifies its checksum, converts it once with the card's converter and keeps the
project-format file; later runs use that file and never touch the network. The cache folder follows
the platform's convention (XDG on Linux, through platformdirs) and moves with ``MUSICTAG_CACHE``;
Hugging Face downloads go there too, so one variable moves or clears everything.

A download that does not match its checksum (truncated, corrupted, or a changed upstream file) is
deleted before anything reads it. Failures are :class:`ModelUnavailableError` or
:class:`ChecksumError`, each one line that says what to do.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import ModelError, WeightsError
from .fileio import atomic_path
from .registry import ModelCard

CACHE_ENV = "MUSICTAG_CACHE"
#: Hugging Face's own offline switch, honoured for Hugging Face sources.
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
#: Checksum kinds a card's ``weights`` may name, strongest first.
CHECKSUM_KINDS = ("sha256", "git_blob_sha1")
_CHUNK_BYTES = 1 << 20

#: Called with (bytes downloaded so far, total bytes or None when unknown).
DownloadProgress = Callable[[int, "int | None"], None]


class ModelUnavailableError(ModelError, RuntimeError):
    """The card is known but its weights are not on this machine; the message says what to do."""


class ChecksumError(WeightsError):
    """A file is not the one the card names; a downloaded copy has already been deleted."""


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    import platformdirs  # here, not at the top: tagging with shipped weights never needs it

    return Path(platformdirs.user_cache_dir("musictag"))


def converted_path(card: ModelCard) -> Path:
    """Where the project-format weights of a downloaded or imported card are kept."""
    return cache_dir() / "models" / f"{card.name}.safetensors"


def _how_to_get(card: ModelCard) -> str:
    return (f"run `musictag models pull {card.name}` (needs internet) or "
            f"`musictag models import FILE --model {card.name}` with a local copy")


def local_weights(card: ModelCard) -> Path:
    """The weights file for ``card``, or :class:`ModelUnavailableError` saying how to get it."""
    shipped = card.weights.get("file")
    if shipped:
        path = (card.home or Path.cwd()) / shipped
        if path.is_file():
            return path
        raise ModelUnavailableError(
            f"model {card.name!r}: its weights ({shipped}) are not in this install; "
            f"pass a weights file or choose another model")
    cached = converted_path(card)
    if cached.is_file():
        return cached
    raise ModelUnavailableError(f"model {card.name!r} is not downloaded; {_how_to_get(card)}")


def is_available_offline(card: ModelCard) -> bool:
    try:
        local_weights(card)
    except ModelUnavailableError:
        return False
    return True


def file_digests(path: Path) -> dict[str, str]:
    """Every checksum kind of a file; ``git_blob_sha1`` is ``sha1(b"blob <size>\\0" + bytes)``."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            sha256.update(chunk)
            blob.update(chunk)
    return {"sha256": sha256.hexdigest(), "git_blob_sha1": blob.hexdigest()}


def expected_checksum(weights: dict[str, Any]) -> tuple[str, str] | None:
    """The strongest ``(kind, hex digest)`` a card's weights entry names, if any."""
    for kind in CHECKSUM_KINDS:
        if weights.get(kind):
            return kind, str(weights[kind]).lower()
    return None


def verify(path: Path, weights: dict[str, Any]) -> bool:
    """Raise :class:`ChecksumError` unless ``path`` matches; False when the card names no checksum.

    The size, when the card gives it, is checked first so that a truncated file says so.
    """
    size = weights.get("size_bytes")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path.name}: {actual_size} bytes, the card's file has {size} "
                            f"({'truncated' if actual_size < size else 'too long'} or not that "
                            f"file)")
    expected = expected_checksum(weights)
    if expected is None:
        return False
    kind, digest = expected
    actual = file_digests(path)[kind]
    if actual != digest:
        raise ChecksumError(f"{path.name}: {kind} {actual} does not match the card's {digest}")
    return True


def _download_name(card: ModelCard) -> Path:
    """The cached upstream file: named by checksum, so cards sharing one file share the copy."""
    url_name = Path(urlparse(card.weights["url"]).path).name or "download"
    expected = expected_checksum(card.weights)
    prefix = expected[1][:16] if expected else card.name
    return cache_dir() / "downloads" / f"{prefix}-{url_name}"


def download(url: str, target: Path, weights: dict[str, Any], *,
             on_progress: DownloadProgress | None = None, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` to ``target``, which appears only once complete and verified.

    A file that fails verification is deleted and :class:`ChecksumError` raised; network failures
    propagate as ``OSError`` (``urllib.error.URLError``).
    """
    import urllib.request  # here, not at the top: with http.client and ssl, tagging never needs it

    with atomic_path(target) as partial:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, \
                open(partial, "wb") as handle:
            length = response.headers.get("Content-Length")
            total = int(length) if length else weights.get("size_bytes")
            done = 0
            while chunk := response.read(_CHUNK_BYTES):
                handle.write(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(done, total)
        try:
            verify(partial, weights)
        except ChecksumError as error:
            raise ChecksumError(f"download of {url} rejected and deleted: {error}") from None
    return target


def _fetch_url(card: ModelCard, on_progress: DownloadProgress | None) -> Path:
    target = _download_name(card)
    if target.is_file():
        try:
            verify(target, card.weights)
            return target
        except ChecksumError:
            target.unlink()
    url = card.weights["url"]
    try:
        return download(url, target, card.weights, on_progress=on_progress)
    except OSError as error:  # urllib.error.URLError is one
        reason = getattr(error, "reason", None) or error
        raise ModelUnavailableError(f"model {card.name!r}: cannot download {url} ({reason}); "
                                    f"fetch that file elsewhere and run `musictag models import "
                                    f"FILE --model {card.name}`") from None


def _hf_offline() -> bool:
    return os.environ.get(HF_OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _hf_progress_class(on_progress: DownloadProgress | None):
    """A silent tqdm that forwards byte counts: the library must not draw progress bars itself."""
    from tqdm.std import tqdm

    class _Report(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.done = 0

        def update(self, n=1):
            self.done += n or 0
            if on_progress:
                on_progress(self.done, self.total)

    return _Report


def _fetch_hf(card: ModelCard, on_progress: DownloadProgress | None) -> Path:
    """The card's file from the Hugging Face hub at its pinned revision, verified when it can be."""
    from huggingface_hub import hf_hub_download

    weights = card.weights
    revision = weights.get("revision")
    if not revision:
        raise ModelUnavailableError(f"model {card.name!r}: its Hugging Face source has no pinned "
                                    f"revision; the card must name one")
    offline = _hf_offline()
    try:
        path = Path(hf_hub_download(weights["hf_repo"], weights["filename"], revision=revision,
                                    cache_dir=cache_dir() / "huggingface",
                                    local_files_only=offline,
                                    tqdm_class=_hf_progress_class(on_progress)))
    except (OSError, ValueError) as error:
        if offline:
            raise ModelUnavailableError(
                f"model {card.name!r} is not cached and {HF_OFFLINE_ENV} is set; unset it and "
                f"{_how_to_get(card)}") from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ModelUnavailableError(f"model {card.name!r}: cannot fetch {weights['filename']} "
                                    f"from {weights['hf_repo']}@{revision} ({first_line}); "
                                    f"{_how_to_get(card)}") from None
    try:
        verify(path, weights)
    except ChecksumError as error:
        path.resolve().unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{weights['hf_repo']}@{revision}: rejected and deleted: {error}") \
            from None
    return path


def fetch(card: ModelCard, *, on_progress: DownloadProgress | None = None) -> Path:
    """The card's verified upstream file in the cache, downloading it when needed."""
    if card.weights.get("hf_repo"):
        return _fetch_hf(card, on_progress)
    if card.weights.get("url"):
        return _fetch_url(card, on_progress)
    raise ModelUnavailableError(f"model {card.name!r} has no download source; its weights "
                                f"ship with the package")


def convert_into_cache(card: ModelCard, source: Path, *, verified: bool) -> Path:
    """Convert an upstream file with the card's converter and keep it at :func:`converted_path`.

    The stored card carries the licence notice and where the weights came from.
    """
    from .convert import CONVERTERS  # torch is imported only when converting
    from .weights import save_weights

    name = card.weights.get("converter")
    if name not in CONVERTERS:
        raise ModelError(f"model {card.name!r}: unknown converter {name!r}; known: "
                         f"{', '.join(sorted(CONVERTERS))}")
    tensors = CONVERTERS[name](Path(source), card)
    stored = card.to_dict()
    stored["provenance"] = {**card.provenance, "converted_from": Path(source).name,
                            "checksum_verified": verified}
    target = converted_path(card)
    save_weights(target, tensors, stored)
    return target


def pull(card: ModelCard, *, on_progress: DownloadProgress | None = None,
         force: bool = False) -> Path:
    """The card's project-format weights, downloaded, verified and converted on first use."""
    if card.weights.get("file"):
        return local_weights(card)
    target = converted_path(card)
    if target.is_file() and not force:
        return target
    source = fetch(card, on_progress=on_progress)
    return convert_into_cache(card, source, verified=expected_checksum(card.weights) is not None)


def import_file(card: ModelCard, source: Path) -> Path:
    """Convert a local upstream file (or folder) for ``card`` into the cache.

    A file must match the card's checksum when the card names one: an import stands in for the
    download, and the converted file is labelled with the card. Folders (an unpacked wheel)
    cannot be checksummed; the converter's key-by-key check is what guards them.
    """
    source = Path(source)
    if not source.exists():
        raise ModelError(f"{source}: no such file or folder")
    verified = source.is_file() and verify(source, card.weights)
    return convert_into_cache(card, source, verified=verified)


def _holds_member(folder: Path, weights: dict[str, Any]) -> bool:
    """Whether ``folder`` is an unpacked archive, or its top folder, holding the card's member."""
    member = Path(weights.get("member") or "")
    if not member.parts:
        return False
    return (folder / member).exists() or (member.parts[0] == folder.name
                                          and (folder.parent / member).exists())


def cards_for_import(source: Path, cards: list[ModelCard], *, model: str | None = None,
                     arch: str | None = None, dataset: str | None = None) -> list[ModelCard]:
    """The convertible cards a local upstream file is for.

    ``model``, ``arch`` (the upstream architecture name in the card's provenance, or the
    project's architecture name) and ``dataset`` narrow the choice; a file whose checksum some
    cards name picks those cards (one wheel can hold several models), as does a folder holding
    their ``member`` paths (an unpacked wheel). What is left must be unambiguous.
    """
    candidates = [card for card in cards if card.weights.get("converter")
                  and (model is None or card.name == model)
                  and (arch is None or arch in (card.provenance.get("upstream_arch"),
                                                card.arch.get("name")))
                  and (dataset is None or card.provenance.get("dataset") == dataset)]
    if not candidates:
        wanted = ", ".join(f"{k} {v!r}" for k, v in
                           (("model", model), ("arch", arch), ("dataset", dataset)) if v)
        raise ModelError(f"no convertible model card fits {wanted or 'this file'}; "
                         f"see `musictag models`")
    if Path(source).is_file():
        digests = file_digests(Path(source))
        matching = [card for card in candidates
                    if (expected := expected_checksum(card.weights))
                    and digests[expected[0]] == expected[1]]
        if matching:
            return matching
    elif Path(source).is_dir():
        holding = [card for card in candidates if _holds_member(Path(source), card.weights)]
        if holding:
            return holding
    if len(candidates) == 1 and (model or arch or dataset):
        return candidates
    names = ", ".join(card.name for card in candidates[:6]) + (", ..." if len(candidates) > 6
                                                                else "")
    raise ModelError(f"{source}: cannot tell which model it holds ({len(candidates)} cards fit: "
                     f"{names}); name the model, or narrow by arch and dataset")
