"""--precision auto (issue 22): the fastest path this CPU accelerates, only where a recorded
measurement on real tracks shows it within bounds of fp32 for the same weights; fp32 otherwise."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import TINY_RATE_HZ, tone, write_audio, write_tiny_model
from typer.testing import CliRunner

from musictag import fastpath
from musictag.cli import app
from musictag.fastpath import (
    PathCheck,
    accelerated,
    choose_path,
    cpu_flags,
    onnx_file_digest,
    read_checks,
    shipped_weights_digest,
    write_check,
)
from musictag.inference import load_tagger
from musictag.registry import ModelCard

AMX = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"})
VNNI = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
PLAIN = frozenset({"sse4_2", "avx2", "fma"})
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx2 avx512f avx512_bf16 avx512_vnni
bugs\t\t: sysret_ss_attrs
processor\t: 1
flags\t\t: fpu
"""


@pytest.fixture
def card(tmp_path) -> ModelCard:
    return ModelCard.from_file(write_tiny_model(tmp_path / "cards", name="tiny-fast"))


def good(card: ModelCard, precision: str, **changes) -> PathCheck:
    check = PathCheck(precision=precision, n_tracks=20, top5_same=1.0, max_track_diff=0.01,
                      mean_track_diff=0.001, weights_sha256=shipped_weights_digest(card))
    return replace(check, **changes)


def test_cpu_flags_come_from_the_first_flags_line():
    assert cpu_flags(CPUINFO) == {"fpu", "sse4_2", "avx2", "avx512f", "avx512_bf16",
                                  "avx512_vnni"}
    assert cpu_flags("processor : 0\n") == frozenset()
    assert isinstance(cpu_flags(), frozenset)  # this machine's, whatever it has


def test_amx_prefers_bf16_then_int8_vnni_int8_and_plain_cpus_nothing():
    assert accelerated(AMX) == ["bf16", "int8"]
    assert accelerated(VNNI) == ["int8"]  # AVX512-BF16 without AMX: bf16 is no faster
    assert accelerated(frozenset({"avx_vnni"})) == ["int8"]
    assert accelerated(PLAIN) == []


def test_no_record_means_fp32_whatever_the_cpu(card):
    choice = choose_path(card, flags=AMX, has_fp32_onnx=True, torch_ok=True)
    assert (choice.backend, choice.precision) == ("onnx", "fp32")
    assert "no accuracy measurement recorded" in choice.reason
    assert choose_path(card, flags=PLAIN, has_fp32_onnx=False, torch_ok=True).backend == "torch"


def test_a_measured_bf16_path_runs_on_amx_only(card):
    checks = {"bf16": good(card, "bf16")}
    on_amx = choose_path(card, flags=AMX, has_fp32_onnx=True, torch_ok=True, checks=checks)
    assert (on_amx.backend, on_amx.precision) == ("torch", "bf16")
    assert "same top-5 on 100% of 20 tracks" in on_amx.reason
    assert choose_path(card, flags=VNNI, has_fp32_onnx=True, torch_ok=True,
                       checks=checks).precision == "fp32"
    assert choose_path(card, flags=AMX, has_fp32_onnx=True, torch_ok=False,
                       checks=checks).precision == "fp32"


@pytest.mark.parametrize(("changes", "why"), [
    ({"max_track_diff": 0.023}, "outside the bounds"),
    ({"top5_same": 0.9}, "outside the bounds"),
    ({"n_tracks": 5}, "outside the bounds"),
    ({"weights_sha256": "sha256:other"}, "other weights"),
])
def test_paths_out_of_bounds_or_measured_on_other_weights_are_not_run(card, changes, why):
    checks = {"bf16": good(card, "bf16", **changes)}
    choice = choose_path(card, flags=AMX, has_fp32_onnx=True, torch_ok=True, checks=checks)
    assert choice.precision == "fp32" and why in choice.reason


def test_int8_runs_only_the_file_measured(card):
    int8 = fastpath.int8_file(card)
    int8.write_bytes(b"\x08\x07")  # a ModelProto holding only ir_version: enough for a digest
    checks = {"int8": good(card, "int8", file=int8.name, file_sha256=onnx_file_digest(int8))}
    choice = choose_path(card, flags=VNNI, has_fp32_onnx=True, torch_ok=True, checks=checks)
    assert (choice.backend, choice.precision, choice.file) == ("onnx", "int8", int8)
    int8.write_bytes(b"\x08\x08")  # re-exported since
    choice = choose_path(card, flags=VNNI, has_fp32_onnx=True, torch_ok=True, checks=checks)
    assert choice.precision == "fp32" and "not the file measured" in choice.reason
    int8.unlink()
    choice = choose_path(card, flags=VNNI, has_fp32_onnx=True, torch_ok=True, checks=checks)
    assert choice.precision == "fp32" and "missing" in choice.reason


def test_the_record_is_read_back_and_each_precision_replaced_alone(card):
    write_check(card, good(card, "bf16"))
    write_check(card, good(card, "int8", max_track_diff=0.03))
    write_check(card, good(card, "bf16", max_track_diff=0.015))
    checks = read_checks(card)
    assert checks["bf16"].max_track_diff == 0.015 and checks["int8"].max_track_diff == 0.03
    stored = json.loads(fastpath.record_path(card).read_text())
    assert stored["bounds"] == {"min_top5_same": 0.95, "max_track_diff": 0.02, "min_tracks": 10}
    fastpath.record_path(card).write_text("{not json")
    assert read_checks(card) == {}


def test_auto_loads_the_verified_path_and_fp32_stays_exact(card, monkeypatch):
    write_check(card, good(card, "bf16"))
    monkeypatch.setattr("musictag.inference.cpu_flags", lambda: AMX)
    fast = load_tagger(str(fastpath.record_path(card).parents[1] / "tiny-fast.json"),
                       precision="auto", device="cpu")
    assert (fast.backend.name, fast.precision) == ("torch", "bf16")
    exact = load_tagger(str(card.home / "tiny-fast.json"), precision="fp32", device="cpu")
    assert (exact.backend.name, exact.precision) == ("torch", "fp32")
    monkeypatch.setattr("musictag.inference.cpu_flags", lambda: PLAIN)
    plain = load_tagger(str(card.home / "tiny-fast.json"), precision="auto", device="cpu")
    assert plain.precision == "fp32" and "neither AMX nor VNNI" in plain.reason


def test_the_cli_says_the_choice_with_v_and_records_it(card, tmp_path, monkeypatch):
    write_check(card, good(card, "bf16"))
    monkeypatch.setattr("musictag.inference.cpu_flags", lambda: AMX)
    song = write_audio(tmp_path / "a.wav", tone(2.0, TINY_RATE_HZ), TINY_RATE_HZ)
    card_file = str(card.home / "tiny-fast.json")
    runner = CliRunner()
    fast = runner.invoke(app, ["tag", "--model", card_file, str(song), "-f", "jsonl", "-v", "-q"])
    assert fast.exit_code == 0, fast.output
    assert "torch backend, bf16 (fastest verified path on this CPU" in fast.stderr
    record = json.loads(fast.stdout)
    assert (record["backend"], record["precision"]) == ("torch", "bf16")
    exact = runner.invoke(app, ["tag", "--model", card_file, str(song), "-f", "jsonl", "-q",
                                "--precision", "fp32"])
    assert json.loads(exact.stdout)["precision"] == "fp32"


def test_resume_reads_logs_written_before_the_path_was_recorded(tiny_model, tmp_path):
    song = write_audio(tmp_path / "a.wav", tone(2.0, TINY_RATE_HZ), TINY_RATE_HZ)
    stat = song.stat()
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"path": str(song), "model": "tiny-test", "duration_s": 2.0,
                               "n_windows": 2, "tags": [], "size": stat.st_size,
                               "mtime_ns": stat.st_mtime_ns}) + "\n")
    result = CliRunner().invoke(app, ["tag", "--model", "tiny-test", str(song), "-o", str(log),
                                      "--resume", "-q"])
    assert result.exit_code == 0, result.output
    assert len(log.read_text().splitlines()) == 1  # done already: nothing tagged again


def test_verify_paths_measures_against_fp32_and_records_it(card, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    for i, freq in enumerate((220.0, 440.0, 880.0)):
        write_audio(songs / f"{i}.wav", tone(3.0, TINY_RATE_HZ, freq), TINY_RATE_HZ)
    result = CliRunner().invoke(app, ["verify-paths", "--model", str(card.home / "tiny-fast.json"),
                                      "--audio", str(songs), "--precision", "bf16", "-q"])
    assert result.exit_code == 0, result.output
    assert "bf16: same top-5 on" in result.stdout and "of 3 tracks" in result.stdout
    assert "OUTSIDE the bounds" in result.stdout  # 3 tracks are too few to vouch for a path
    check = read_checks(card)["bf16"]
    assert check.n_tracks == 3 and check.weights_sha256 == shipped_weights_digest(card)
    assert check.max_track_diff < 0.05 and "verify-paths" in check.command

