"""The pieces train and distill share: the run folder, the decoded-audio cache, the device rule."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_LABELS, TINY_RATE_HZ, tiny_arch, tone, write_audio

from musictag.data.cache import AudioCache
from musictag.device import autocast_dtype, resolve_device
from musictag.distill.corpus import open_corpus
from musictag.errors import ModelError, RunError
from musictag.registry import ModelCard
from musictag.runfolder import RunFolder
from musictag.weights import read_weights


@dataclass
class _Config:
    lr: float = 0.1
    steps: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _given(**settings: Any):
    return lambda base: _Config(**{**(base.to_dict() if base else {}), **settings})


def test_a_run_folder_starts_once_and_resumes_only_what_it_stored(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with pytest.raises(RunError, match="no run to resume"):
        folder.open_config(lambda d: _Config(**d), None, resume=True)
    assert not folder.started
    assert folder.open_config(lambda d: _Config(**d), _given(lr=0.5), resume=False) == \
        _Config(lr=0.5)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"lr": 0.5, "steps": 10}
    with pytest.raises(RunError, match="already holds a run; resume it"):
        folder.open_config(lambda d: _Config(**d), _given(lr=0.5), resume=False)
    # Resuming: no settings, or settings that repeat the stored ones, give the stored config.
    assert folder.open_config(lambda d: _Config(**d), None, resume=True) == _Config(lr=0.5)
    assert folder.open_config(lambda d: _Config(**d), _given(lr=0.5), resume=True).lr == 0.5
    with pytest.raises(RunError, match="would change: lr, steps"):
        folder.open_config(lambda d: _Config(**d), _given(lr=0.2, steps=3), resume=True)
    # Another process of a distributed run neither writes nor refuses: rank 0 does both.
    assert folder.open_config(lambda d: _Config(**d), _given(lr=0.9), resume=False,
                              write=False).lr == 0.9
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.5


def test_a_config_written_before_a_field_existed_loads_with_its_default(tmp_path):
    """The distill config.json of a run started before ``device`` existed resumes on the CPU."""
    from musictag.distill.run import DistillConfig

    old = DistillConfig(audio_dir=str(tmp_path), teachers=[("tiny-test", 1.0)],
                        held_out_groups=["a"]).to_dict()
    del old["device"]
    (tmp_path / "config.json").write_text(json.dumps(old, indent=2))
    config = RunFolder(tmp_path).open_config(DistillConfig.from_dict, None, resume=True)
    assert config.device == "cpu" and config.teachers == [("tiny-test", 1.0)]
    changed = DistillConfig.from_dict({**old, "device": "auto"})
    with pytest.raises(RunError, match="would change: device$"):
        RunFolder(tmp_path).open_config(DistillConfig.from_dict, lambda _: changed, resume=True)


def test_logs_append_or_rewrite_whole_rows(tmp_path):
    folder = RunFolder(tmp_path)
    folder.append_row("log.csv", {"step": 10, "loss": 0.5})
    folder.append_row("log.csv", {"step": 20, "loss": 0.25})
    folder.append_row("validation.jsonl", {"step": 20, "per_tag": [{"tag": "x"}]})
    assert (tmp_path / "log.csv").read_text().splitlines() == ["step,loss", "10,0.5", "20,0.25"]
    assert json.loads((tmp_path / "validation.jsonl").read_text())["per_tag"] == [{"tag": "x"}]
    folder.write_rows("epochs.csv", [{"epoch": 1, "loss": 2.0, "extra": "dropped"}],
                      ["epoch", "loss"])
    folder.write_rows("epochs.csv", [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}],
                      ["epoch", "loss"])
    assert (tmp_path / "epochs.csv").read_text().splitlines() == [
        "epoch,loss", "1,1.0", "2,0.5"]


def test_export_writes_a_card_tag_accepts_and_float32_weights(tmp_path):
    from musictag.nets import build_model

    model = build_model(tiny_arch()).to(torch.bfloat16)
    card = ModelCard.from_dict({
        "name": "mine", "arch": tiny_arch(), "labels": TINY_LABELS,
        "sample_rate_hz": TINY_RATE_HZ, "window_samples": 6561,
        "weights": {"file": "mine.safetensors"}})
    path = RunFolder(tmp_path).export(card, model.state_dict())
    assert path == tmp_path / "mine.json"
    assert ModelCard.from_file(path).to_dict() == card.to_dict()
    tensors, stored = read_weights(tmp_path / "mine.safetensors")
    assert stored["name"] == "mine"
    assert tensors["frontend.0.weight"].dtype == np.float32
    assert tensors["frontend.1.num_batches_tracked"].dtype == np.int64


def test_a_checkpoint_round_trips_and_its_absence_means_a_fresh_start(tmp_path):
    folder = RunFolder(tmp_path)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert folder.load_checkpoint(model=model, optimizer=optimizer) is None
    folder.save_checkpoint(model=model, optimizer=optimizer, counters={"step": 7})
    saved = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.zero_()
    assert folder.load_checkpoint(model=model, optimizer=optimizer)["step"] == 7
    assert torch.equal(model.weight, saved)


# --- the decoded-audio cache ----------------------------------------------------------------


def _clips(root, names, seconds=1.0):
    for index, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_audio(root / name, tone(seconds, TINY_RATE_HZ, 200.0 + 50 * index), TINY_RATE_HZ)


def test_processes_decoding_shares_into_one_cache_keep_each_others_entries(tmp_path):
    """Two caches on one folder stand for two ranks of a distributed run: the first records
    its share while the second decodes, and the second's index write must keep it."""
    _clips(tmp_path / "audio", ["a.wav", "b.wav", "c.wav"])
    first = AudioCache(tmp_path / "cache", tmp_path / "audio", sample_rate_hz=TINY_RATE_HZ)
    second = AudioCache(tmp_path / "cache", tmp_path / "audio", sample_rate_hz=TINY_RATE_HZ)
    second.decode(["b.wav"], workers=1, on_progress=lambda done, _: done or first.decode(
        ["a.wav", "c.wav"], workers=1))
    assert first.lengths(["a.wav", "b.wav", "c.wav"]) == {
        "a.wav": TINY_RATE_HZ, "b.wav": TINY_RATE_HZ, "c.wav": TINY_RATE_HZ}
    with pytest.raises(RunError, match="cache holds audio at 8000 Hz, not 4000 Hz"):
        AudioCache(tmp_path / "cache", tmp_path / "audio", sample_rate_hz=4000)


def test_a_dataset_cache_of_before_the_index_is_adopted_not_decoded_again(tmp_path, caplog):
    """``CACHE/<rate>hz/<sha1[:20]>.npy`` and ``.err``, as dataset caches were written."""
    _clips(tmp_path / "audio", ["a.wav"])
    folder = tmp_path / "cache" / f"{TINY_RATE_HZ}hz"
    folder.mkdir(parents=True)
    stem = {name: folder / hashlib.sha1(name.encode()).hexdigest()[:20]
            for name in ("a.wav", "gone.mp3")}
    np.save(stem["a.wav"].with_suffix(".npy"), np.full(123, 0.5, np.float16))
    stem["gone.mp3"].with_suffix(".err").write_text("gone.mp3: not decodable\n")
    cache = AudioCache.per_rate(tmp_path / "cache", tmp_path / "audio",
                                sample_rate_hz=TINY_RATE_HZ)
    seen: list[tuple[int, int]] = []
    cache.decode(["a.wav", "gone.mp3"], workers=1,
                 on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 2)]  # nothing decoded: a.wav would have 8000 samples, not 123
    with caplog.at_level(logging.WARNING):
        assert cache.lengths(["a.wav", "gone.mp3"]) == {"a.wav": 123}
    assert any("not decodable" in record.getMessage() for record in caplog.records)
    np.testing.assert_array_equal(cache.segment("a.wav", 120, 5), [0.5] * 3 + [0.0] * 2)


def test_the_distill_corpus_and_a_dataset_read_one_cache(tmp_path):
    """A folder decoded for training serves as the distill corpus's cache, and back."""
    _clips(tmp_path / "audio", ["rock/a.wav", "jazz/b.wav"], seconds=5.0)
    cache = AudioCache(tmp_path / "cache", tmp_path / "audio", sample_rate_hz=TINY_RATE_HZ)
    cache.decode(["rock/a.wav"], workers=1)
    seen: list[tuple[int, int]] = []
    corpus = open_corpus(tmp_path / "audio", tmp_path / "cache", sample_rate_hz=TINY_RATE_HZ,
                         min_duration_s=1.0, workers=1,
                         on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]  # rock/a.wav came from the dataset's decoding
    assert [(t.path, t.group, t.n_samples) for t in corpus.tracks] == [
        ("jazz/b.wav", "jazz", 5 * TINY_RATE_HZ), ("rock/a.wav", "rock", 5 * TINY_RATE_HZ)]
    track = corpus.tracks[0]
    np.testing.assert_array_equal(corpus.segment(track, 100, 50),
                                  AudioCache(tmp_path / "cache", tmp_path / "audio",
                                             sample_rate_hz=TINY_RATE_HZ).segment(
                                      "jazz/b.wav", 100, 50))
    assert track.cache_file == hashlib.sha1(b"jazz/b.wav").hexdigest()[:16] + ".npy"


# --- device and precision -------------------------------------------------------------------


def test_one_device_and_precision_rule():
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ModelError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ModelError, match="unknown precision 'fp8'"):
        autocast_dtype("fp8", cpu)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_distill_refuses_a_missing_gpu_before_taking_the_folder(tmp_path):
    from musictag.distill.run import DistillConfig, DistillRun

    config = DistillConfig(audio_dir=str(tmp_path), teachers=[("tiny-test", 1.0)],
                           held_out_groups=["a"], device="cuda")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        DistillRun(tmp_path / "run", config)
    assert not RunFolder(tmp_path / "run").started
