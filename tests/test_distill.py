"""musictag distill: a run on generated audio, exact resume, held-out agreement that can fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LABELS, TINY_RATE_HZ, tiny_arch, tone, write_audio
from typer.testing import CliRunner

from musictag.cli import app
from musictag.distill.teachers import TeacherEnsemble, centre, parse_teacher_spec
from musictag.distill.validate import ValidationSet, agreement
from musictag.weights import read_weights, save_weights

GROUPS = {"tones": "tone", "noise": "noise", "chirps": "chirp"}


def _signal(kind: str, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * TINY_RATE_HZ)
    if kind == "tone":
        return tone(seconds, TINY_RATE_HZ, freq_hz=200.0 + 150.0 * seed)
    if kind == "noise":
        return (0.2 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(n) / TINY_RATE_HZ
    return (0.3 * np.sin(2 * np.pi * (100 + 300 * t) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def teacher(tiny_model) -> str:
    """A tiny tagger whose top tags follow the audio (the plain tiny model's follow its biases)."""
    import torch

    from musictag.nets import build_model

    torch.manual_seed(1)
    model = build_model(tiny_arch()).eval()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for key in state:  # small running variances amplify what each layer passes on
        if key.endswith("running_var"):
            state[key] = np.full_like(state[key], 1e-2)
    state["head.classifier.weight"] = 1e-3 * state["head.classifier.weight"]
    state["head.classifier.bias"] = 0 * state["head.classifier.bias"]
    card = {**json.loads(tiny_model.read_text()), "name": "tiny-teacher",
            "weights": {"file": "tiny-teacher.safetensors"}}
    save_weights(tiny_model.parent / "tiny-teacher.safetensors", state, card)
    (tiny_model.parent / "tiny-teacher.json").write_text(json.dumps(card))
    assert card["labels"] == TINY_LABELS
    return "tiny-teacher"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three groups (first-level folders) of 5 s clips, in two formats."""
    root = tmp_path_factory.mktemp("corpus")
    for group, kind in GROUPS.items():
        (root / group).mkdir()
        for index in range(6 if kind == "tone" else 3):
            suffix = ".flac" if index % 2 else ".ogg"
            write_audio(root / group / f"{kind}{index}{suffix}", _signal(kind, 5.0, index),
                        TINY_RATE_HZ)
    (root / "top-level-file.wav").write_bytes(b"")  # outside any group: ignored
    return root


def _distill(run_dir: Path, corpus: Path, tiny_model: Path, *extra: str):
    return CliRunner().invoke(app, [
        "distill", "--run-dir", str(run_dir), "--teacher", "tiny-teacher",
        "--audio-dir", str(corpus), "--hold-out", "tones", "--student", str(tiny_model),
        "--cache-dir", str(run_dir.parent / "cache"), "--batch-size", "4", "--steps", "12",
        "--name", "student", "--quiet", *extra])


def test_distill_end_to_end_gives_a_card_tag_accepts(tmp_path, corpus, tiny_model, teacher):
    run_dir = tmp_path / "run"
    result = _distill(run_dir, corpus, tiny_model)
    assert result.exit_code == 0, result.output
    card_path = run_dir / "student.json"
    assert result.stdout.strip().endswith(str(card_path))
    card = json.loads(card_path.read_text())
    assert card["provenance"]["held_out_groups"] == ["tones"]
    assert [t["name"] for t in card["provenance"]["teachers"]] == ["tiny-teacher"]
    assert set(card["provenance"]["corpus_groups"]) == set(GROUPS)
    assert card["provenance"]["steps"] == 12
    assert card["sample_rate_hz"] == TINY_RATE_HZ and card["window_samples"] == 6561
    report = card["reported"]["distillation_agreement"]
    assert report["tracks"] == 6 and report["tags_scored"] >= 1
    assert 0.0 <= report["macro_roc_auc"] <= 1.0
    assert 0.0 <= report["mean_top5_overlap"] <= 5.0
    fit = report["training_tracks"]  # all 6 tracks of the two training groups
    assert fit["tracks"] == 6 and 0.0 <= fit["mean_top5_overlap"] <= 5.0
    paths = ValidationSet.load(run_dir / "fit_check_set.npz").paths
    assert len(paths) == 6 and not any(path.startswith("tones") for path in paths)
    _, stored = read_weights(run_dir / "student.safetensors")
    assert stored["name"] == "student"
    rows = [json.loads(line) for line in (run_dir / "validation.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 12 and len(rows[-1]["per_tag"]) == 10
    assert (run_dir / "log.csv").read_text().splitlines()[0].startswith("step,loss")

    tagged = CliRunner().invoke(app, ["tag", "--model", str(card_path), "--format", "json",
                                      "--quiet", str(corpus / "tones" / "tone0.ogg")])
    assert tagged.exit_code == 0, tagged.output
    assert len(json.loads(tagged.stdout)[0]["tags"]) == 5


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, corpus, tiny_model, teacher):
    """Also for a folder whose config.json was written before the ``device`` setting existed:
    runs started then are resumed by this code and must go on as they would have."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _distill(whole, corpus, tiny_model).exit_code == 0
    first = _distill(split, corpus, tiny_model, "--max-steps", "5")
    assert first.exit_code == 0, first.output
    assert json.loads((split / "student.json").read_text())["provenance"]["steps"] == 5
    stored = json.loads((split / "config.json").read_text())
    assert stored.pop("device") == "cpu"
    (split / "config.json").write_text(json.dumps(stored, indent=2))  # as the old code wrote it
    resumed = CliRunner().invoke(app, ["distill", "--run-dir", str(split), "--resume",
                                       "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    a, _ = read_weights(whole / "student.safetensors")
    b, _ = read_weights(split / "student.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_run_refuses_other_options_and_unknown_groups(tmp_path, corpus, tiny_model, teacher):
    run_dir = tmp_path / "run"
    assert _distill(run_dir, corpus, tiny_model, "--max-steps", "1").exit_code == 0
    again = _distill(run_dir, corpus, tiny_model)
    assert again.exit_code == 2 and "--resume" in again.output
    unknown = CliRunner().invoke(app, [
        "distill", "--run-dir", str(tmp_path / "other"), "--teacher", "tiny-test",
        "--audio-dir", str(corpus), "--hold-out", "jazz", "--student", str(tiny_model),
        "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert unknown.exit_code == 2 and "jazz" in unknown.output
    missing = CliRunner().invoke(app, ["distill", "--run-dir", str(tmp_path / "new"),
                                       "--quiet"])
    assert missing.exit_code == 2 and "--teacher" in missing.output


def test_agreement_separates_a_faithful_student_from_a_contrary_one():
    rng = np.random.default_rng(0)
    labels = [f"t{i}" for i in range(12)]
    teacher = rng.random((40, 12))
    faithful = agreement(teacher, teacher, labels)
    contrary = agreement(-teacher, teacher, labels)
    unrelated = agreement(rng.random((40, 12)), teacher, labels)
    # Positives are each track's top 5, so even a perfect copy ranks a few below the line.
    assert faithful["macro_roc_auc"] > 0.9 and faithful["mean_top5_overlap"] == 5.0
    assert contrary["macro_roc_auc"] < 0.1 and contrary["mean_top5_overlap"] < 0.5
    assert 0.3 < unrelated["macro_roc_auc"] < 0.7
    assert faithful["tracks"] == 40 and faithful["tags_scored"] == 12
    same_everywhere = agreement(teacher, np.tile(teacher[:1], (40, 1)), labels)
    assert same_everywhere["tags_scored"] == 0 and same_everywhere["macro_roc_auc"] is None


def test_teachers_refuse_windows_far_longer_than_the_students(tiny_model):
    with pytest.raises(ValueError, match="cannot label"):
        TeacherEnsemble([("tiny-test", 1.0)], student_window_s=0.3)
    ensemble = TeacherEnsemble([("tiny-test", 2.0)], student_window_s=0.8)
    segments = np.stack([_signal("tone", 1.0, 1), _signal("noise", 1.0, 2)])
    targets = ensemble.score(segments, sample_rate_hz=TINY_RATE_HZ)
    teacher = ensemble.teachers[0].tagger
    expected = teacher.predict(np.stack([centre(s, 6561) for s in segments]))
    np.testing.assert_allclose(targets, expected, atol=1e-6)
    assert ensemble.teachers[0].weight == 1.0  # weights are normalised to sum to 1


def test_teacher_specs_and_centring():
    assert parse_teacher_spec("a") == ("a", 1.0)
    assert parse_teacher_spec("musicnn-mtt-vgg:0.5") == ("musicnn-mtt-vgg", 0.5)
    for bad in ("a:x", "a:0", "a:-1"):
        with pytest.raises(ValueError):
            parse_teacher_spec(bad)
    np.testing.assert_array_equal(centre(np.arange(10, dtype=np.float32), 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(centre(np.ones(2, np.float32), 6), [0, 0, 1, 1, 0, 0])


def test_sigterm_stops_a_run_with_a_checkpoint_that_resumes(tmp_path, corpus, tiny_model,
                                                            teacher):
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "musictag", "distill", "--run-dir", str(run_dir),
               "--teacher", teacher, "--audio-dir", str(corpus), "--hold-out", "tones",
               "--student", str(tiny_model), "--cache-dir", str(tmp_path / "cache"),
               "--batch-size", "2", "--steps", "100000", "--quiet"]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "log.csv"
    deadline = time.monotonic() + 60
    while not (log.exists() and len(log.read_text().splitlines()) > 1):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, process.communicate()
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    stopped_at = state["counters"]["step"]
    assert 10 <= stopped_at < 100000
    resumed = CliRunner().invoke(app, ["distill", "--run-dir", str(run_dir), "--resume",
                                       "--max-steps", "3", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    card = json.loads(Path(resumed.stdout.strip().splitlines()[-1]).read_text())
    assert card["provenance"]["steps"] == stopped_at + 3


def test_init_starts_the_student_from_a_cards_weights(tmp_path, corpus, tiny_model, teacher):
    teacher_weights, _ = read_weights(tiny_model.parent / "tiny-teacher.safetensors")
    runs = {}
    for name, extra in (("fresh", ()), ("warm", ("--init", "tiny-teacher"))):
        result = _distill(tmp_path / name, corpus, tiny_model, "--lr", "0", "--max-steps", "2",
                          *extra)
        assert result.exit_code == 0, result.output
        runs[name], _ = read_weights(tmp_path / name / "student.safetensors")
    weight_keys = [k for k in teacher_weights if k.endswith("weight")]
    assert weight_keys
    for key in weight_keys:  # a zero learning rate leaves the starting weights as they were
        np.testing.assert_allclose(runs["warm"][key], teacher_weights[key], err_msg=key)
    assert any(not np.allclose(runs["fresh"][k], teacher_weights[k]) for k in weight_keys)
    card = json.loads((tmp_path / "warm" / "student.json").read_text())
    assert card["provenance"]["initialised_from"] == "tiny-teacher"


def test_tempered_loss_is_bce_at_one_and_keeps_its_optimum_at_the_teachers_logits():
    import torch
    import torch.nn.functional as F

    from musictag.distill.run import soft_target_loss

    targets = torch.tensor([[0.9, 0.3, 0.02, 0.001]])
    logits = torch.tensor([[0.5, -2.0, -1.0, -9.0]])
    assert torch.allclose(soft_target_loss(logits, targets, 1.0),
                          F.binary_cross_entropy_with_logits(logits, targets))
    at_teacher = torch.logit(targets).requires_grad_()
    soft_target_loss(at_teacher, targets, 2.0).backward()
    assert at_teacher.grad.abs().max() < 1e-6

    def tail_gradient(temperature: float) -> float:
        student = torch.tensor([[2.2, -0.85, -6.0, -4.0]], requires_grad=True)
        soft_target_loss(student, targets, temperature).backward()
        return float(student.grad[0, 2:].abs().sum())

    assert tail_gradient(2.0) > 5 * tail_gradient(1.0)  # unlikely tags still pull at T=2


def test_agreement_command_pairs_students_on_any_audio_and_keeps_the_labels(
        tmp_path, corpus, tiny_model, teacher):
    cache = tmp_path / "cache"

    def compare(*extra: str):
        return CliRunner().invoke(app, [
            "agreement", "--teacher", "tiny-teacher", "--audio-dir", str(corpus),
            "--cache-dir", str(cache), "--model", "tiny-teacher", "--model", str(tiny_model),
            *extra])

    result = compare("--group", "tones", "--group", "noise")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tracks"] == 9 and set(report["groups"]) == {"tones", "noise"}
    itself = report["models"]["tiny-teacher"]  # the teacher as its own student
    assert itself["mean_top5_overlap"] == 5.0 and itself["mean_top5_overlap_ci95"] == [5.0, 5.0]
    other = report["models"][str(tiny_model)]
    assert other["mean_top5_overlap"] < 5.0
    difference = report["paired_with_first"][str(tiny_model)]["mean_top5_overlap"]
    assert difference["difference"] == round(other["mean_top5_overlap"] - 5.0, 4)
    assert difference["ci95"][1] <= 0.0
    assert "tiny-teacher: ROC-AUC" in result.stderr and "minus tiny-teacher" in result.stderr
    labelled = list(cache.glob("agreement-*.npz"))
    assert len(labelled) == 1
    stamp = labelled[0].stat().st_mtime_ns
    assert compare("--group", "tones", "--group", "noise").stdout == result.stdout
    assert labelled[0].stat().st_mtime_ns == stamp  # the teachers' labels were reused
    compare("--group", "tones")
    assert len(list(cache.glob("agreement-*.npz"))) == 2  # other tracks, other labels
    unknown = compare("--group", "jazz")
    assert unknown.exit_code == 2 and "jazz" in unknown.output


def test_a_distilled_students_own_training_groups_are_flagged(tmp_path, corpus, tiny_model,
                                                              teacher):
    run_dir = tmp_path / "run"
    assert _distill(run_dir, corpus, tiny_model, "--max-steps", "1").exit_code == 0
    result = CliRunner().invoke(app, [
        "agreement", "--teacher", "tiny-teacher", "--audio-dir", str(corpus),
        "--cache-dir", str(tmp_path / "cache"), "--model", str(run_dir / "student.json")])
    assert result.exit_code == 0, result.output
    seen = json.loads(result.stdout)["models"][str(run_dir / "student.json")]
    assert seen["trained_on_evaluated_groups"] == ["chirps", "noise"]
    assert "not held out" in result.stderr


def test_the_cache_returns_only_the_files_the_folder_still_holds(tmp_path, corpus):
    import shutil

    from musictag.distill.corpus import open_corpus

    audio = tmp_path / "audio"
    shutil.copytree(corpus, audio)
    first = open_corpus(audio, tmp_path / "cache", sample_rate_hz=TINY_RATE_HZ,
                        min_duration_s=1.0).tracks
    shutil.rmtree(audio / "noise")
    (audio / "tones" / "tone0.ogg").unlink()
    second = open_corpus(audio, tmp_path / "cache", sample_rate_hz=TINY_RATE_HZ,
                         min_duration_s=1.0).tracks
    assert {t.group for t in first} == set(GROUPS)
    assert sorted(t.path for t in second) == sorted(
        t.path for t in first if t.group != "noise" and t.path != "tones/tone0.ogg")


def test_the_label_bank_rebuilds_each_segment_it_labelled(tmp_path, corpus, tiny_model, teacher):
    """A bank entry is a seed and the teachers' scores of the segment that seed rebuilds."""
    from musictag.distill.bank import LabelBank
    from musictag.distill.run import BANK_FILE, DistillRun

    result = _distill(tmp_path / "run", corpus, tiny_model, "--labels-per-step", "2")
    assert result.exit_code == 0, result.output
    run = DistillRun(tmp_path / "run")
    run._prepare()
    stored = LabelBank.load(tmp_path / "run" / BANK_FILE, n_labels=len(TINY_LABELS),
                            fingerprint=run.bank.fingerprint)
    assert len(stored) == 12 * 2  # two newly labelled segments a step
    segments = np.stack([run.sampler.draw(run.span, int(seed)) for seed in stored.seeds[:6]])
    np.testing.assert_array_equal(segments[0], run.sampler.draw(run.span, int(stored.seeds[0])))
    rescored = run.ensemble.score(segments, sample_rate_hz=TINY_RATE_HZ)
    np.testing.assert_allclose(stored.targets[:6], rescored, atol=1e-6)
    with pytest.raises(ValueError, match="other training tracks"):
        LabelBank.load(tmp_path / "run" / BANK_FILE, n_labels=len(TINY_LABELS),
                       fingerprint="another corpus")


def test_a_group_weight_draws_that_group_more_often(tmp_path, corpus, tiny_model, teacher):
    from musictag.distill.augment import parse_group_weight
    from musictag.distill.run import DistillRun

    assert parse_group_weight("voice-mixes:4") == ("voice-mixes", 4.0)
    for bad in ("voices", "voices:0", "voices:x", ":2"):
        with pytest.raises(ValueError, match="GROUP:WEIGHT"):
            parse_group_weight(bad)
    result = _distill(tmp_path / "run", corpus, tiny_model, "--group-weight", "chirps:3",
                      "--max-steps", "1")
    assert result.exit_code == 0, result.output
    run = DistillRun(tmp_path / "run")
    run._prepare()
    groups = np.array([t.group for t in run.sampler.tracks])
    chirps = run.sampler.probabilities[groups == "chirps"].sum()
    noise = run.sampler.probabilities[groups == "noise"].sum()
    assert chirps == pytest.approx(3 * noise)  # same count and length of tracks, weight 3
    refused = _distill(tmp_path / "other", corpus, tiny_model, "--group-weight", "tones:2")
    assert refused.exit_code == 2 and "not among the training groups" in refused.output


def test_distill_help_states_the_config_defaults():
    """cli/distill.py leaves unset options to DistillConfig; its help repeats those defaults."""
    import typer.main

    from musictag.distill.run import DistillConfig

    defaults = DistillConfig(audio_dir="", teachers=[], held_out_groups=[])
    command = typer.main.get_command(app).commands["distill"]
    fields = {"name": "name", "steps": "total_steps", "batch_size": "batch_size",
              "labels_per_step": "labels_per_step", "lr": "lr", "warmup_steps": "warmup_steps",
              "temperature": "temperature", "precision": "precision", "device": "device",
              "seed": "seed"}
    helps = {param.name: param.help for param in command.params}
    for option, field in fields.items():
        assert f"[default: {getattr(defaults, field)}]" in helps[option], option


def test_student_agreement_from_python(tmp_path, corpus, tiny_model, teacher):
    from musictag.distill.report import StudentAgreement, student_agreement
    from musictag.errors import RunError

    stages: list[str] = []
    report = student_agreement(["tiny-teacher", str(tiny_model)], ["tiny-teacher"], corpus,
                               tmp_path / "cache", groups=["tones"], windows_per_track=4,
                               on_status=stages.append)
    assert isinstance(report, StudentAgreement) and report.tracks == 6
    assert report.models["tiny-teacher"]["mean_top5_overlap"] == 5.0
    assert report.models["tiny-teacher"]["trained_on_evaluated_groups"] == []
    assert list(report.paired_with_first) == [str(tiny_model)]
    assert list(report.to_dict()) == ["tracks", "windows_per_track", "groups", "teachers",
                                      "models", "paired_with_first"]
    assert stages[-1] == "scoring the students"
    with pytest.raises(RunError, match="jazz"):
        student_agreement(["tiny-teacher"], ["tiny-teacher"], corpus, tmp_path / "cache",
                          groups=["jazz"])


def test_compare_teachers_from_python_and_the_command(tmp_path, corpus, tiny_model, teacher):
    from musictag.distill.report import compare_teachers

    expected = {"tones": [TINY_LABELS[0]]}
    report = compare_teachers(["tiny-teacher", str(tiny_model)], corpus, tmp_path / "cache",
                              expected=expected, per_group=2)
    assert report.tracks == 6 and report.groups == sorted(GROUPS)
    assert len(report.agreement) == 1  # one pair of teachers
    assert set(report.plausibility) == {"tiny-teacher", str(tiny_model)}
    for by_group in report.top5_by_group.values():
        assert set(by_group) == set(GROUPS)
        assert all(len(tags) == min(5, len(TINY_LABELS)) for tags in by_group.values())
    expect = tmp_path / "expect.json"
    expect.write_text(json.dumps(expected))
    result = CliRunner().invoke(app, [
        "compare-teachers", "--teacher", "tiny-teacher", "--teacher", str(tiny_model),
        "--audio-dir", str(corpus), "--cache-dir", str(tmp_path / "cache"), "--expect",
        str(expect), "--per-group", "2", "-o", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(report.to_dict()))
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(result.stdout)
    expect.write_text("{not json")
    bad = CliRunner().invoke(app, [
        "compare-teachers", "--teacher", "tiny-teacher", "--audio-dir", str(corpus),
        "--cache-dir", str(tmp_path / "cache"), "--expect", str(expect)])
    assert bad.exit_code == 2 and "not a JSON object" in bad.stderr


def test_band_limiting_removes_the_top_and_spares_older_runs():
    """A band-limited segment keeps nothing above the lower rate's Nyquist frequency; a stored
    config from before band limiting existed gets none, and its bank keeps its fingerprint."""
    import dataclasses
    from types import SimpleNamespace

    from musictag.distill.augment import AugmentConfig, SegmentSampler

    rate = 22050
    config = AugmentConfig(band_limit_probability=1.0, band_limit_rates_hz=(8000.0,))
    sampler = SegmentSampler(None, [SimpleNamespace(n_samples=rate, group="g")],
                             sample_rate_hz=rate, config=config)
    noise = np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    narrow = sampler._band_limit(noise, np.random.default_rng(1))
    assert narrow.shape == noise.shape and narrow.dtype == np.float32
    power = np.abs(np.fft.rfft(narrow)) ** 2
    freqs = np.fft.rfftfreq(rate, 1 / rate)
    assert power[freqs > 4200].sum() < 1e-3 * power[freqs < 3800].sum()
    assert power[freqs < 3800].sum() > 0.5 * (np.abs(np.fft.rfft(noise)) ** 2)[freqs < 3800].sum()

    old = {key: value for key, value in dataclasses.asdict(AugmentConfig()).items()
           if not key.startswith("band_limit")}
    restored = AugmentConfig.from_dict(old)
    assert restored.band_limit_probability == 0.0
    assert restored.fingerprint_dict() == old
    assert "band_limit_probability" in AugmentConfig().fingerprint_dict()
