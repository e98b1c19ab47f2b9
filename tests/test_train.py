"""``musictag preprocess / train / evaluate`` end to end on generated MTAT, resuming, settings."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_datasets import generated_mtat, write_clip, write_folder
from typer.testing import CliRunner

from musictag.cli import app
from musictag.inference import load_tagger
from musictag.nets import build_model
from musictag.registry import ModelCard
from musictag.training.config import TrainConfig, merged, parse_assignments, read_config_file
from musictag.training.model import load_init_weights, set_input_statistics
from musictag.training.run import TrainingRun, open_config
from musictag.training.schedule import PlateauSchedule
from musictag.weights import read_weights

#: A 3^5 SampleCNN at 8 kHz (6561-sample windows), wide enough to hear 50 tones apart.
SMALL_RUN = """
sample_rate_hz = 8000
batch_size = 16
lr = 0.05
segments_per_clip = 4
max_epochs = 16

[arch]
name = "samplecnn"
m = 3
n_modules = 5
first_filter = 27
first_stride = 27
first_channels = 16
module_channels = [16, 16, 32, 32, 32]
dense_channels = 32
"""


@pytest.fixture
def mtat(tmp_path_factory) -> tuple[Path, Path]:
    """The generated MTAT and a decoded-audio cache shared by this module's tests."""
    root, _ = generated_mtat(tmp_path_factory)
    return root, root.parent / "mtat-cache"


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_mtat_is_preprocessed_trained_and_evaluated_above_0_9_roc_auc(mtat, tmp_path):
    root, cache = mtat
    config = tmp_path / "small.toml"
    config.write_text(SMALL_RUN)
    prepared = invoke("preprocess", "--data-dir", root, "--sample-rate", 8000, "--cache-dir",
                      cache, "-q")
    assert prepared.exit_code == 0, prepared.output
    assert json.loads(prepared.stdout)["clips"] == {"train": 120, "valid": 10, "test": 30}

    run = tmp_path / "run"
    trained = invoke("train", "--run-dir", run, "--data-dir", root, "--cache-dir", cache,
                     "--config", config, "--set", "seed=3", "-q")
    assert trained.exit_code == 0, trained.output
    card_path = Path(trained.stdout.strip())
    assert card_path == run / "samplecnn-mtat.json"
    assert len([line for line in trained.stderr.splitlines() if line.startswith("epoch")]) == 16
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    with open(run / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 17))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    card = ModelCard.from_file(card_path)
    assert card.sample_rate_hz == 8000 and card.window_samples == 6561 and len(card.labels) == 50

    evaluated = invoke("evaluate", "--model", card_path, "--data-dir", root, "--cache-dir",
                       cache, "--split", "test", "--json", "-q")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["n_clips"] == 30 and report["roc_auc"] > 0.9, report["roc_auc"]
    assert len(report["per_tag"]) == 50
    in_bf16 = invoke("evaluate", "--model", card_path, "--data-dir", root, "--cache-dir", cache,
                     "--split", "test", "--json", "-q", "--precision", "bf16")
    assert in_bf16.exit_code == 0, in_bf16.output
    assert abs(json.loads(in_bf16.stdout)["roc_auc"] - report["roc_auc"]) < 0.02

    clip = next(p for p in sorted((root / "d").iterdir()) if p.suffix == ".mp3")
    tagged = invoke("tag", "--model", card_path, clip, "--format", "json", "-q")
    assert tagged.exit_code == 0, tagged.output
    assert json.loads(tagged.stdout)[0]["n_windows"] == 36


def _train_command(run: Path, root: Path, cache: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "musictag", "train", "--run-dir", str(run), "--data-dir",
            str(root), "--cache-dir", str(cache), "--config", str(config), "-q"]


def _wait_for(condition, process: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.05)


def _epochs_logged(run: Path) -> int:
    log = run / "log.csv"
    return max(0, len(log.read_text().splitlines()) - 1) if log.exists() else 0


def test_resume_after_ctrl_c_and_kill_9_ends_where_an_uninterrupted_run_does(mtat, tmp_path):
    root, cache = mtat
    config = tmp_path / "resume.toml"
    config.write_text(SMALL_RUN.replace("max_epochs = 16", "max_epochs = 5")
                      .replace("segments_per_clip = 4", "segments_per_clip = 2\n"
                               "checkpoint_every_steps = 4"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    reference = tmp_path / "reference"
    subprocess.run(_train_command(reference, root, cache, config), env=env, check=True,
                   capture_output=True)

    run = tmp_path / "interrupted"
    command = _train_command(run, root, cache, config)
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run / "checkpoint.pt").exists(), first)
    first.send_signal(signal.SIGINT)
    assert first.wait(60) == 130
    assert "continue with --resume" in first.stderr.read()

    second = subprocess.Popen([*command, "--resume"], env=env, stderr=subprocess.DEVNULL)
    _wait_for(lambda: _epochs_logged(run) >= 2, second)
    time.sleep(0.3)  # into the next epoch, past a step checkpoint or not
    second.kill()
    assert second.wait(30) == -signal.SIGKILL

    subprocess.run([*command, "--resume"], env=env, check=True, capture_output=True)
    expected, _ = read_weights(reference / "samplecnn-mtat.safetensors")
    resumed, _ = read_weights(run / "samplecnn-mtat.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)

    def numbers(folder: Path) -> list[tuple]:
        with open(folder / "log.csv") as handle:
            return [(r["epoch"], r["loss"], r["val_loss"], r["val_roc_auc"], r["lr"])
                    for r in csv.DictReader(handle)]

    assert numbers(run) == numbers(reference) and len(numbers(run)) == 5


def test_paper_schedule_divides_by_five_four_times_then_stops():
    schedule = PlateauSchedule(lr=0.01)
    outcomes = [schedule.step(loss) for loss in (1.0, 0.9, 0.95, 0.91, 0.92)]
    assert outcomes == ["improved", "improved", "waiting", "waiting", "decayed"]
    assert schedule.lr == pytest.approx(0.002)
    assert schedule.step(0.5) == "improved" and schedule.bad_epochs == 0
    while not schedule.finished:
        schedule.step(0.6)
    assert schedule.decays == 4 and schedule.lr == pytest.approx(0.000016)
    restored = PlateauSchedule(lr=1.0)
    restored.load_state_dict(schedule.state_dict())
    assert restored == schedule


def test_defaults_are_the_papers_and_every_setting_can_be_overridden(tmp_path):
    defaults = TrainConfig()
    assert (defaults.batch_size, defaults.lr, defaults.momentum, defaults.nesterov,
            defaults.lr_decay_factor, defaults.patience_epochs, defaults.max_lr_decays,
            defaults.optimizer) == (23, 0.01, 0.9, True, 5.0, 3, 4, "sgd")
    toml = tmp_path / "run.toml"
    toml.write_text('lr = 1\nprecision = "bf16"\n[arch]\ndropout = 0.3\n')
    config = merged(defaults, {**read_config_file(toml),
                               **parse_assignments(["arch.n_modules=3", "name=mine"])})
    assert config.lr == 1.0 and config.precision == "bf16" and config.name == "mine"
    assert config.arch == {"dropout": 0.3, "n_modules": 3}
    replaced = merged(config, {"arch": {"name": "framelevel_mel", "n_modules": 4}})
    assert replaced.arch == {"name": "framelevel_mel", "n_modules": 4}
    with pytest.raises(ValueError, match="unknown training setting 'learning_rate'"):
        merged(defaults, {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="batch_size must be a int"):
        merged(defaults, {"batch_size": "big"})
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_assignments(["lr"])
    (tmp_path / "bad.toml").write_text("lr = \n")
    with pytest.raises(ValueError, match="bad.toml: not valid toml"):
        read_config_file(tmp_path / "bad.toml")


def test_a_run_folder_is_never_overwritten_and_resume_keeps_its_settings(tmp_path):
    settings = {"data_dir": str(tmp_path), "lr": 0.1}
    stored = open_config(tmp_path / "run", settings, resume=False)
    with pytest.raises(ValueError, match="already holds a run; resume it"):
        open_config(tmp_path / "run", settings, resume=False)
    assert open_config(tmp_path / "run", {"lr": 0.1}, resume=True) == stored
    with pytest.raises(ValueError, match="would change: batch_size, lr"):
        open_config(tmp_path / "run", {"lr": 0.2, "batch_size": 4}, resume=True)
    with pytest.raises(ValueError, match="precision 'fp8'"):
        open_config(tmp_path / "other", {**settings, "precision": "fp8"}, resume=False)


def test_fine_tuning_carries_weights_and_matching_tags_over(tiny_model, tmp_path):
    init = ModelCard.from_file(tiny_model)
    tensors, _ = read_weights(tiny_model.with_suffix(".safetensors"))
    labels = ["new-tag", "tag03", "tag07"]
    model = build_model({**init.arch, "n_classes": 3})
    fresh_row = model.state_dict()["head.classifier.weight"][0].clone()
    load_init_weights(model, init, labels)
    state = model.state_dict()
    np.testing.assert_array_equal(state["head.classifier.weight"][1:].numpy(),
                                  tensors["head.classifier.weight"][[3, 7]])
    assert torch.equal(state["head.classifier.weight"][0], fresh_row)
    np.testing.assert_array_equal(state["frontend.0.weight"].numpy(),
                                  tensors["frontend.0.weight"])


def test_init_given_as_a_relative_card_path_is_stored_absolute(tiny_model, tmp_path, monkeypatch):
    labels = write_folder(tmp_path / "music", n_clips=8, seconds=2.0)
    labels.write_text(labels.read_text().replace("guitar", "tag03"))
    monkeypatch.chdir(tiny_model.parent)
    trained = invoke("train", "--run-dir", tmp_path / "run", "--dataset", "folder",
                     "--data-dir", tmp_path / "music", "--labels", labels,
                     "--cache-dir", tmp_path / "cache", "--init", tiny_model.name,
                     "--max-epochs", 1, "--batch-size", 4, "--workers", 1, "-q")
    assert trained.exit_code == 0, trained.output
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["init"]
    assert stored == str(tiny_model.resolve())


def test_fine_tuning_a_card_on_a_folder_in_bfloat16(tiny_model, tmp_path):
    labels = write_folder(tmp_path / "music", n_clips=16, seconds=2.0)
    text = labels.read_text().replace("guitar", "tag03")
    labels.write_text(text)
    run = TrainingRun(tmp_path / "run", {
        "dataset": "folder", "data_dir": str(tmp_path / "music"), "labels": str(labels),
        "cache_dir": str(tmp_path / "cache"), "init": str(tiny_model), "max_epochs": 1,
        "batch_size": 4, "precision": "bf16", "workers": 1, "name": "mine"})
    card_path = run.train()
    card = ModelCard.from_file(card_path)
    assert card.provenance["init"] == "tiny-test" and "tag03" in card.labels
    assert card.window_samples == 6561 and card.sample_rate_hz == 8000
    tagger = load_tagger(str(card_path), device="cpu")
    result = tagger.tag(tmp_path / "music" / "audio" / "song01.wav")
    assert result.scores.shape == (len(card.labels),)


def test_mel_model_input_statistics_come_from_the_training_audio(tmp_path):
    from musictag.data.cache import AudioCache

    rng = np.random.default_rng(0)
    for i in range(4):
        write_clip(tmp_path / f"{i}.wav", 0.5 * rng.standard_normal(8000).astype(np.float32))
    cache = AudioCache(tmp_path / "cache", tmp_path, sample_rate_hz=8000)
    paths = [f"{i}.wav" for i in range(4)]
    cache.decode(paths, workers=1)
    model = build_model({"name": "framelevel_mel", "n_modules": 3, "module_channels": [8, 8, 8],
                         "n_mels": 16, "sample_rate_hz": 8000, "dense_channels": 8,
                         "n_classes": 2})
    window = model.config.input_samples
    set_input_statistics(model, cache, paths, np.full(4, 8000), window_samples=window, seed=0)
    assert float(model.input_mean) != 0.0 and float(model.input_std) != 1.0
    with torch.no_grad():
        segment = torch.from_numpy(cache.segment("2.wav", 1000, window))[None]
        standardised = (model.log_mel(segment) - model.input_mean) / model.input_std
    assert abs(float(standardised.mean())) < 0.5 and 0.5 < float(standardised.std()) < 2.0
