"""Embeddings: the documented shapes, and `similar` finding a file's own near-copy first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RATE_HZ, tiny_arch, tone, write_audio, write_tiny_model
from typer.testing import CliRunner

from musictag.cli import app
from musictag.inference import load_tagger
from musictag.library.embed import EmbeddingIndex
from musictag.nets import build_model
from musictag.weights import read_weights, save_weights

EMBEDDING_SIZE = tiny_arch()["dense_channels"]


def gain_blind_model(folder: Path) -> Path:
    """The tiny model with every bias zeroed: a ReLU network without biases maps ``g * x`` to
    ``g * f(x)``, so its embeddings point the same way at any gain, as a trained tagger's nearly
    do. (The random tiny model's biases swamp its input: every track looks alike to it.)"""
    card_path = write_tiny_model(folder, name="tiny-gain-blind")
    weights = folder / "tiny-gain-blind.safetensors"
    tensors, card = read_weights(weights)
    model = build_model(tiny_arch())
    model.load_state_dict({name: torch.from_numpy(value) for name, value in tensors.items()})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    save_weights(weights, {k: v.numpy() for k, v in model.state_dict().items()}, card)
    return card_path


def library(folder: Path) -> dict[str, Path]:
    rate, seconds = TINY_RATE_HZ, 3.0
    t = np.arange(int(seconds * rate)) / rate
    signals = {
        "tone-300": tone(seconds, rate, 300),
        "tone-330": tone(seconds, rate, 330),
        "tone-1000": tone(seconds, rate, 1000),
        "noise": (0.1 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32),
        "chirp": (0.3 * np.sin(2 * np.pi * (100 + 500 * t) * t)).astype(np.float32),
    }
    signals["tone-300-quieter"] = 0.4 * signals["tone-300"]  # the near-copy: -8 dB
    folder.mkdir(parents=True, exist_ok=True)
    return {name: write_audio(folder / f"{name}.flac", signal, rate)
            for name, signal in signals.items()}


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_embed_shapes(tiny_model, tmp_path):
    files = library(tmp_path / "music")
    tagger = load_tagger("tiny-test")
    windows = tagger.embed(files["chirp"])
    assert windows.shape == (tagger.tag(files["chirp"]).n_windows, EMBEDDING_SIZE)

    result = invoke("embed", tmp_path / "music", "--model", "tiny-test", "-o",
                    tmp_path / "e.npz", "--per-window")
    assert result.exit_code == 0, result.stderr
    index = EmbeddingIndex.load(tmp_path / "e.npz")
    assert index.model == "tiny-test"
    assert sorted(index.paths) == sorted(str(p) for p in files.values())
    assert index.embeddings.shape == (len(files), EMBEDDING_SIZE)
    assert index.embeddings.dtype == np.float32
    n_windows = [len(tagger.embed(path)) for path in index.paths]
    assert index.window_embeddings.shape == (sum(n_windows), EMBEDDING_SIZE)
    assert np.bincount(index.window_file).tolist() == n_windows
    row = index.paths.index(str(files["chirp"]))
    np.testing.assert_allclose(index.embeddings[row], windows.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(index.window_embeddings[index.window_file == row], windows,
                               rtol=1e-5)

    plain = invoke("embed", files["chirp"], "--model", "tiny-test", "-o", tmp_path / "p.npz")
    assert plain.exit_code == 0 and EmbeddingIndex.load(tmp_path / "p.npz").window_file is None


def test_embed_precision_bf16_is_near_fp32_and_other_precisions_are_refused(tiny_model,
                                                                             tmp_path):
    files = library(tmp_path / "music")
    for precision in ("fp32", "bf16"):
        result = invoke("embed", files["chirp"], files["noise"], "--model", "tiny-test",
                        "--precision", precision, "-o", tmp_path / f"{precision}.npz")
        assert result.exit_code == 0, result.stderr
    exact, bf16 = (EmbeddingIndex.load(tmp_path / f"{p}.npz") for p in ("fp32", "bf16"))
    assert exact.paths == bf16.paths
    assert not np.array_equal(exact.embeddings, bf16.embeddings)  # bf16 really ran
    np.testing.assert_allclose(bf16.embeddings, exact.embeddings, rtol=0.05, atol=0.02)

    refused = invoke("embed", files["chirp"], "--model", "tiny-test", "--precision", "int8",
                     "-o", tmp_path / "int8.npz")
    assert refused.exit_code == 2
    assert "--precision must be fp32 or bf16" in refused.stderr
    assert not (tmp_path / "int8.npz").exists()


def test_similar_ranks_the_near_copy_first(tmp_path):
    card = gain_blind_model(tmp_path / "model")
    weights = card.with_suffix(".safetensors")
    files = library(tmp_path / "music")
    made = invoke("embed", tmp_path / "music", "--weights", weights, "-o", tmp_path / "e.npz")
    assert made.exit_code == 0, made.stderr

    listed = invoke("similar", files["tone-300"], "--index", tmp_path / "e.npz", "-k", "3",
                    "-f", "jsonl")
    assert listed.exit_code == 0, listed.stderr
    ranked = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    assert ranked[0]["path"] == str(files["tone-300-quieter"])
    assert str(files["tone-300"]) not in [r["path"] for r in ranked]  # the query itself
    assert ranked[0]["similarity"] > 0.999 > ranked[1]["similarity"]

    outside = tmp_path / "elsewhere.flac"  # not in the index: embedded with the index's model
    write_audio(outside, 0.8 * tone(3.0, TINY_RATE_HZ, 1000), TINY_RATE_HZ)
    found = invoke("similar", outside, "--index", tmp_path / "e.npz", "-k", "1", "-f", "tsv",
                   "--weights", weights)
    assert found.exit_code == 0, found.stderr
    assert found.stdout.split("\t")[1] == str(files["tone-1000"])


@pytest.mark.parametrize("content", [b"", b"not an npz"])
def test_similar_names_a_bad_index(tmp_path, content):
    (tmp_path / "e.npz").write_bytes(content)
    result = invoke("similar", "x.flac", "--index", tmp_path / "e.npz")
    assert result.exit_code == 2 and "not an embeddings index" in result.stderr
