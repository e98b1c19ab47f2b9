"""One error type: what musictag raises on purpose is a MusictagError, shown as one line by the
CLI (with its traceback under -v); anything else keeps its traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from musictag.audio import AudioError
from musictag.cli import app
from musictag.errors import (
    ExportError,
    ModelError,
    MusictagError,
    RunError,
    WeightsError,
    first_line,
)
from musictag.export import ExportError as ExportModuleError
from musictag.hub import ChecksumError, ModelUnavailableError
from musictag.registry import UnknownModelError, get_card
from musictag.scale.ray_engine import EngineError
from musictag.weights import CorruptWeightsError


@pytest.mark.parametrize(("error", "builtin"), [
    (UnknownModelError, LookupError), (ModelUnavailableError, RuntimeError),
    (ChecksumError, ValueError), (CorruptWeightsError, ValueError),
    (ExportError, RuntimeError), (EngineError, RuntimeError), (ModelError, ValueError),
    (RunError, ValueError), (WeightsError, ValueError), (AudioError, MusictagError)])
def test_every_kind_is_a_musictag_error_and_still_its_old_builtin(error, builtin):
    assert issubclass(error, MusictagError) and issubclass(error, builtin)
    assert ExportModuleError is ExportError


def test_library_messages_name_parameters_not_flags():
    with pytest.raises(UnknownModelError) as caught:
        get_card("no-such-model")
    assert "--" not in str(caught.value)


def test_first_line():
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(KeyError("key")) == "key"
    assert first_line(RuntimeError()) == "RuntimeError()"


def test_the_cli_prints_one_line_and_the_traceback_under_verbose():
    quiet = CliRunner().invoke(app, ["tag", "--model", "no-such-model", "x.wav"])
    assert quiet.exit_code == 2
    assert quiet.stderr.strip().splitlines() == [
        line for line in quiet.stderr.strip().splitlines() if line.startswith("musictag: error:")]
    assert "Traceback" not in quiet.stderr
    loud = CliRunner().invoke(app, ["tag", "-v", "--model", "no-such-model", "x.wav"])
    assert loud.exit_code == 2
    assert "Traceback" in loud.stderr and "UnknownModelError" in loud.stderr


def test_a_bug_in_a_distill_run_keeps_its_traceback(tmp_path, monkeypatch):
    import musictag.distill.run

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(musictag.distill.run, "DistillRun", broken)
    result = CliRunner().invoke(app, ["distill", "--run-dir", str(tmp_path / "run"),
                                      "--teacher", "samplecnn", "--audio-dir",
                                      str(tmp_path), "--hold-out", "a"])
    assert isinstance(result.exception, RuntimeError), result.output
    assert "usage" not in result.stderr and "musictag: error:" not in result.stderr


def test_a_bug_in_a_training_run_keeps_its_traceback(tmp_path, monkeypatch):
    import musictag.training

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(musictag.training, "TrainingRun", broken)
    result = CliRunner().invoke(app, ["train", "--run-dir", str(tmp_path / "run"),
                                      "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, RuntimeError), result.output
    assert "musictag: error:" not in result.stderr
