"""What a Tagger reports besides scores: the decoded audio's real length, and a model that gives
NaN or infinite scores failing each file instead of writing them out (issue 21, items 2 and 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RATE_HZ, tone, write_audio, write_tiny_model
from typer.testing import CliRunner

from musictag.audio import AudioError
from musictag.cli import app
from musictag.inference import ModelOutputError, load_tagger
from musictag.weights import read_weights, save_weights


def tiny_weights(folder: Path, *, averaging: dict | None = None, poison: bool = False) -> Path:
    """The tiny model's weights file, its card's window rule changed or one weight set to NaN
    (written through save_weights, so the digest fits: NaN weights are a model error, not
    corruption on disk)."""
    card_path = write_tiny_model(folder)
    tensors, card = read_weights(folder / "tiny-test.safetensors")
    if averaging:
        card["averaging"] = averaging
    if poison:
        name = next(n for n, v in tensors.items() if v.dtype == np.float32 and v.ndim > 1)
        tensors[name] = tensors[name].copy()
        tensors[name].flat[0] = np.nan
    path = folder / "weights.safetensors"
    save_weights(path, tensors, card)
    card_path.unlink()
    return path


@pytest.mark.parametrize("averaging", [{"rule": "consecutive"},
                                       {"rule": "evenly_spaced", "n_windows": 4}])
def test_duration_is_the_decoded_audios_length_not_the_windows(tmp_path, averaging):
    """7.3 s showed as 7.38 s (nine 0.82 s windows) and evenly spaced windows gave any track
    their own 3.3 s."""
    tagger = load_tagger(weights=tiny_weights(tmp_path / "model", averaging=averaging),
                         device="cpu", backend="torch")
    short = write_audio(tmp_path / "short.wav", tone(7.3, 44100, channels=2), 44100)
    long = write_audio(tmp_path / "long.flac", tone(20.0, TINY_RATE_HZ), TINY_RATE_HZ)
    single = tagger.tag(short)
    assert single.duration_s == pytest.approx(7.3, abs=1e-4)
    assert single.n_windows * single.window_s != pytest.approx(7.3, abs=0.01)
    many = dict(tagger.tag_many([short, long]))
    assert [r.duration_s for r in many.values()] == pytest.approx([7.3, 20.0], abs=1e-4)


def test_nan_scores_fail_each_file_naming_the_model(tmp_path):
    weights = tiny_weights(tmp_path / "model", poison=True)
    tagger = load_tagger(weights=weights, device="cpu", backend="torch")
    songs = [write_audio(tmp_path / f"{name}.wav", tone(3.0, TINY_RATE_HZ, freq), TINY_RATE_HZ)
             for name, freq in (("a", 440.0), ("b", 880.0))]
    with pytest.raises(ModelOutputError, match="model 'tiny-test' gave NaN or infinite scores"):
        tagger.tag(songs[0])
    outcomes = list(tagger.tag_many(songs))
    assert [path for path, _ in outcomes] == songs
    assert all(isinstance(outcome, ModelOutputError) and isinstance(outcome, AudioError)
               and str(outcome).startswith(f"{path}: model 'tiny-test'")
               for path, outcome in outcomes)
    with pytest.raises(ModelOutputError, match="NaN or infinite embeddings"):
        tagger.embed(songs[0])

    result = CliRunner().invoke(app, ["tag", "--weights", str(weights), "--format", "jsonl",
                                      "--threshold", "0.5", *map(str, songs)])
    assert result.exit_code == 1
    assert result.stdout == ""  # no record with NaN scores, which is not JSON either
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all("model 'tiny-test' gave NaN" in line for line in lines)

