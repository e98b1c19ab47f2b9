"""Downloads into the user cache: real files over a local HTTP server, file:// and a hub cache.

Nothing here is mocked: the server sends real bytes, the checksums are computed on what arrived,
and the converter is the won2020 one on a small state dict with upstream key names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, tone, write_audio, write_tiny_model
from safetensors.numpy import save_file
from typer.testing import CliRunner

from musictag import hub
from musictag.cli import app
from musictag.inference import load_tagger
from musictag.nets import build_model
from musictag.registry import ModelCard
from musictag.weights import CARD_METADATA_KEY, CorruptWeightsError, read_weights

WON = SHARED / "reference-checkpoints" / "won2020"
TINY_ARCH = {"name": "won2020_samplecnn", "channels": [4, 4, 4, 4, 4, 4, 4, 4, 8],
             "first_channels": 4, "n_classes": 3}
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(hub.CACHE_ENV, str(folder))
    monkeypatch.delenv(hub.HF_OFFLINE_ENV, raising=False)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A ``best_model.pth`` as upstream saves it: a plain state dict of the tiny SampleCNN."""
    torch.manual_seed(0)
    state = build_model(TINY_ARCH).state_dict()
    path = tmp_path_factory.mktemp("upstream") / "best_model.pth"
    torch.save(state, path)
    return path.read_bytes(), state


def blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tiny_card(weights: dict, name: str = "tiny-upstream") -> ModelCard:
    return ModelCard.from_dict({
        "name": name, "arch": TINY_ARCH, "labels": ["a", "b", "c"], "sample_rate_hz": 16000,
        "window_samples": 59049, "averaging": {"rule": "evenly_spaced", "n_windows": 16},
        "weights": {"converter": "won2020", **weights}, "licence": "MIT",
        "licence_notice": "Copyright (c) the upstream authors"})


class Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 and counts the requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


def test_cache_dir_moves_with_the_environment_variable(tmp_path, monkeypatch):
    assert hub.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(hub.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "musictag"


def test_git_blob_sha1_is_what_git_computes(tmp_path, checkpoint):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = tmp_path / "best_model.pth"
    path.write_bytes(checkpoint[0])
    by_git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert hub.file_digests(path)["git_blob_sha1"] == by_git == blob_sha1(checkpoint[0])


def test_pull_downloads_verifies_converts_once_and_reuses(server, checkpoint):
    data, state = checkpoint
    server.files["/raw/best_model.pth"] = data
    card = tiny_card({"url": server.url("/raw/best_model.pth"), "git_blob_sha1": blob_sha1(data),
                      "size_bytes": len(data)})
    progress = []
    path = hub.pull(card, on_progress=lambda done, total: progress.append((done, total)))
    assert path == hub.converted_path(card) and server.requests == 1
    assert progress[-1] == (len(data), len(data))
    tensors, stored = read_weights(path)
    assert stored["licence_notice"] == "Copyright (c) the upstream authors"
    assert stored["provenance"] == {"converted_from": Path(hub._download_name(card)).name,
                                    "checksum_verified": True}
    assert sorted(tensors) == sorted(state)
    assert np.array_equal(tensors["dense.weight"], state["dense.weight"].numpy())

    assert hub.pull(card) == path and server.requests == 1  # converted once, reused after
    tagger = load_tagger(weights=path, device="cpu")
    assert tagger.predict(np.zeros((1, 59049), np.float32)).shape == (1, 3)


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
@pytest.mark.parametrize("with_size", [True, False])
def test_a_damaged_download_is_deleted_reported_and_never_converted(server, checkpoint, damage,
                                                                    with_size):
    data, _ = checkpoint
    served = data[: len(data) // 2] if damage == "truncated" else (
        data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    server.files["/raw/best_model.pth"] = served
    weights = {"url": server.url("/raw/best_model.pth"), "git_blob_sha1": blob_sha1(data)}
    if with_size:
        weights["size_bytes"] = len(data)
    card = tiny_card(weights)
    expected = "truncated" if damage == "truncated" and with_size else "does not match"
    with pytest.raises(hub.ChecksumError, match=f"rejected and deleted: .*{expected}"):
        hub.pull(card)
    assert not any((hub.cache_dir() / "downloads").iterdir())
    assert not hub.converted_path(card).exists()

    server.files["/raw/best_model.pth"] = data  # the next pull starts afresh and succeeds
    assert hub.pull(card).is_file()


def test_a_corrupted_cached_download_is_replaced(server, checkpoint):
    data, _ = checkpoint
    server.files["/w.pth"] = data
    card = tiny_card({"url": server.url("/w.pth"), "git_blob_sha1": blob_sha1(data)})
    cached = hub._download_name(card)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the checkpoint")
    hub.pull(card)
    assert server.requests == 1 and cached.read_bytes() == data


def test_file_urls_and_sha256_checksums(tmp_path, checkpoint):
    data, _ = checkpoint
    source = tmp_path / "best_model.pth"
    source.write_bytes(data)
    card = tiny_card({"url": source.as_uri(), "sha256": hashlib.sha256(data).hexdigest()})
    assert hub.pull(card).is_file()
    wrong = tiny_card({"url": source.as_uri(), "sha256": "0" * 64}, name="tiny-wrong")
    with pytest.raises(hub.ChecksumError, match="sha256"):
        hub.pull(wrong)


def test_an_unreachable_source_fails_in_one_line_that_says_how_to_get_it(server, checkpoint):
    card = tiny_card({"url": server.url("/missing.pth"), "git_blob_sha1": "0" * 40})
    with pytest.raises(hub.ModelUnavailableError) as raised:
        hub.pull(card)
    message = str(raised.value)
    assert "\n" not in message and "musictag models import FILE --model tiny-upstream" in message
    with pytest.raises(hub.ModelUnavailableError, match="musictag models pull tiny-upstream"):
        hub.local_weights(card)


def hub_layout(data: bytes) -> Path:
    """A file in the Hugging Face cache layout under the musictag cache, at :data:`REVISION`."""
    snapshot = (hub.cache_dir() / "huggingface" / "models--someone--tiny" / "snapshots" /
                REVISION)
    snapshot.mkdir(parents=True)
    (snapshot / "best_model.pth").write_bytes(data)
    return snapshot / "best_model.pth"


def hf_card(data: bytes) -> ModelCard:
    return tiny_card({"hf_repo": "someone/tiny", "filename": "best_model.pth",
                      "revision": REVISION, "sha256": hashlib.sha256(data).hexdigest()},
                     name="tiny-hf")


def test_hugging_face_sources_honour_offline_mode(monkeypatch, checkpoint):
    data, state = checkpoint
    monkeypatch.setenv(hub.HF_OFFLINE_ENV, "1")
    card = hf_card(data)
    with pytest.raises(hub.ModelUnavailableError) as raised:
        hub.pull(card)
    message = str(raised.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert "musictag models pull tiny-hf" in message

    hub_layout(data)
    tensors, _ = read_weights(hub.pull(card))
    assert np.array_equal(tensors["dense.bias"], state["dense.bias"].numpy())


def test_a_corrupted_hugging_face_file_is_deleted(monkeypatch, checkpoint):
    data, _ = checkpoint
    monkeypatch.setenv(hub.HF_OFFLINE_ENV, "1")
    cached = hub_layout(data[:-10])
    with pytest.raises(hub.ChecksumError, match="rejected and deleted"):
        hub.pull(hf_card(data))
    assert not cached.exists()


def run(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_models_lists_licence_notices():
    result = run("models")
    assert result.exit_code == 0
    assert "Licence notice for" in result.stdout and "won2020-mtat-fcn" in result.stdout
    assert "Code developed by Minz Won" in result.stdout


def test_imported_checkpoint_is_what_tag_uses(tmp_path):
    if not (WON / "mtat" / "musicnn.pth").is_file():
        pytest.skip("../shared/reference-checkpoints/won2020 is not here")
    missing = run("tag", "--model", "won2020-mtat-musicnn", tmp_path / "none.wav")
    assert missing.exit_code == 2 and "musictag models pull won2020-mtat-musicnn" in missing.stderr

    unknown = tmp_path / "best_model.pth"  # no card names its checksum
    unknown.write_bytes((WON / "mtat" / "fcn.pth").read_bytes() + b"\0")
    ambiguous = run("models", "import", unknown, "--dataset", "mtat")
    assert ambiguous.exit_code == 2 and "won2020-mtat-crnn" in ambiguous.stderr
    wrong = run("models", "import", WON / "mtat" / "fcn.pth", "--model", "won2020-mtat-musicnn")
    assert wrong.exit_code == 2 and "the card's file has 3257172" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1

    imported = run("models", "import", WON / "mtat" / "musicnn.pth", "--arch", "musicnn",
                   "--dataset", "mtat")
    assert imported.exit_code == 0, imported.stderr
    assert imported.stdout.split("\t")[0] == "won2020-mtat-musicnn"

    by_checksum = run("models", "import", WON / "msd" / "fcn.pth")  # no options: the checksum
    assert by_checksum.stdout.split("\t")[0] == "won2020-msd-fcn"

    audio = write_audio(tmp_path / "x.wav", tone(4.0, 16000), 16000)
    tagged = run("tag", "--model", "won2020-mtat-musicnn", "--format", "json", audio)
    assert tagged.exit_code == 0, tagged.stderr
    assert '"model": "won2020-mtat-musicnn"' in tagged.stdout


# --- digests: every weights file musictag writes carries one of its tensors (issue 21, item 2) ---

def flip_a_tensor_byte(path: Path) -> None:
    """Change one bit of the last tensor's bytes, as a bad disk or copy does: safetensors itself
    checks only the header, so such a file loads."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_weights_is_an_error_naming_the_file(tmp_path, caplog):
    path = write_tiny_model(tmp_path).with_suffix(".safetensors")
    with caplog.at_level(logging.WARNING, logger="musictag.weights"):
        read_weights(path)
    assert caplog.text == ""
    flip_a_tensor_byte(path)
    with pytest.raises(CorruptWeightsError, match=f"^{path}: corrupted: its tensors do not match"):
        read_weights(path)
    song = write_audio(tmp_path / "a.wav", tone(3.0, 8000), 8000)
    result = run("tag", "--weights", path, song)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"musictag: error: {path}: corrupted: its tensors do not match the digest stored with "
        f"them; replace the file"]


def test_weights_without_a_digest_load_with_one_warning(tmp_path, caplog):
    """What musictag wrote before digests: loaded, with one warning per file and process."""
    tensors, card = read_weights(write_tiny_model(tmp_path).with_suffix(".safetensors"))
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={CARD_METADATA_KEY: json.dumps(card)})
    with caplog.at_level(logging.WARNING, logger="musictag.weights"):
        for _ in range(2):
            loaded, _ = read_weights(old)
    assert [r.getMessage() for r in caplog.records] == [
        f"{old}: carries no digest of its tensors (an older musictag wrote it), so a corrupted "
        f"copy would go unnoticed"]
    assert all(np.array_equal(loaded[name], tensors[name]) for name in tensors)


def test_the_shipped_model_files_carry_their_digests(caplog):
    from musictag.backends.onnx_backend import DIGEST_KEY, OnnxBackend

    models = Path(__file__).resolve().parents[1] / "models"
    with caplog.at_level(logging.WARNING):
        tensors, card = read_weights(models / "samplecnn.safetensors")
        onnx = OnnxBackend(models / "samplecnn.onnx")
    assert caplog.text == ""
    metadata = onnx.session.get_modelmeta().custom_metadata_map
    assert metadata[DIGEST_KEY].startswith("sha256:")
    assert card["name"] == onnx.card.name == "samplecnn" and len(tensors) == 79


def test_a_corrupted_converted_file_in_the_cache_says_how_to_fetch_it_again(tmp_path,
                                                                          checkpoint):
    data, _ = checkpoint
    source = tmp_path / "best_model.pth"
    source.write_bytes(data)
    card = tiny_card({"url": source.as_uri(), "sha256": hashlib.sha256(data).hexdigest()})
    converted = hub.pull(card)
    read_weights(converted)
    flip_a_tensor_byte(converted)
    with pytest.raises(CorruptWeightsError) as raised:
        load_tagger(weights=converted, device="cpu")
    assert str(raised.value).startswith(f"{converted}: corrupted")
    assert str(raised.value).endswith("replace the file (`musictag models pull tiny-upstream "
                                      "--force` fetches and converts it again)")
    assert hub.pull(card, force=True) == converted
    read_weights(converted)
