"""`musictag tag` end to end on the tiny model of conftest.py, and the Python API under it."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY_LABELS, tiny_arch, tone, write_audio
from typer.testing import CliRunner

import musictag
from musictag.cli import app
from musictag.inference import Tagger
from musictag.nets import build_model
from musictag.weights import read_weights

REPO = Path(__file__).resolve().parents[1]
RATE = 8000  # the tiny model's rate; files are written at other rates too


@pytest.fixture(scope="module")
def music(tmp_path_factory) -> Path:
    """A folder of three tracks in sub-folders, plus files that are not audio."""
    root = tmp_path_factory.mktemp("music")
    (root / "sub" / "deep").mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_audio(root / "a.wav", tone(3.0, RATE, 440.0), RATE)
    noisy = tone(5.0, 44100, 1000.0, channels=2) + 0.05 * rng.standard_normal((5 * 44100, 2))
    write_audio(root / "sub" / "b.flac", noisy.astype(np.float32), 44100)
    write_audio(root / "sub" / "deep" / "c.ogg", tone(4.0, 16000, 220.0), 16000)
    (root / "notes.txt").write_text("not audio")
    (root / "sub" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    return root


def tracks(music: Path) -> list[Path]:
    return [music / "a.wav", music / "sub" / "b.flac", music / "sub" / "deep" / "c.ogg"]


def invoke(*args, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def tag(*args, **kwargs):
    return invoke("tag", "--model", "tiny-test", *args, **kwargs)


@pytest.fixture(scope="module")
def api_scores(tiny_model, music) -> dict[str, dict[str, float]]:
    """Every label's score per track, through the Python API (checked below against predict)."""
    tagger = musictag.load_tagger("tiny-test")
    return {str(path): tagger.tag(path).score_dict() for path in tracks(music)}


def top(scores: dict[str, float], k: int) -> list[str]:
    return sorted(scores, key=lambda label: -scores[label])[:k]


def test_jsonl_records(tiny_model, music, api_scores):
    result = tag(*tracks(music), "--format", "jsonl", "--top-k", "3")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in tracks(music)]
    for record in records:
        assert record["model"] == "tiny-test"
        assert record["n_windows"] >= 3
        labels = [item["tag"] for item in record["tags"]]
        assert labels == top(api_scores[record["path"]], 3)
        for item in record["tags"]:
            assert 0.0 <= item["score"] <= 1.0
            assert item["score"] == pytest.approx(api_scores[record["path"]][item["tag"]],
                                                  abs=1e-6)
    assert records[1]["duration_s"] == pytest.approx(5.0, abs=0.9)  # covered by its windows


def test_json_is_one_array(tiny_model, music, api_scores):
    result = tag(*tracks(music), "-f", "json", "-k", "2", "--all-scores")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 3
    for record in records:
        assert len(record["tags"]) == 2
        assert set(record["scores"]) == set(TINY_LABELS)
        for label, score in record["scores"].items():
            assert score == pytest.approx(api_scores[record["path"]][label], abs=1e-6)


@pytest.mark.parametrize(("fmt", "delimiter"), [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_have_one_row_per_file_and_tag(tiny_model, music, api_scores, fmt,
                                                   delimiter):
    result = tag(*tracks(music), "--format", fmt, "-k", "4")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout), delimiter=delimiter))
    assert rows[0] == ["path", "rank", "tag", "score"]
    assert len(rows) == 1 + 3 * 4
    for path in tracks(music):
        mine = [row for row in rows[1:] if row[0] == str(path)]
        assert [int(row[1]) for row in mine] == [1, 2, 3, 4]
        assert [row[2] for row in mine] == top(api_scores[str(path)], 4)
        assert all(0.0 <= float(row[3]) <= 1.0 for row in mine)


def test_table_names_files_and_tags(tiny_model, music, api_scores):
    result = tag(*tracks(music), "--format", "table", "-k", "2", env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.stderr
    for path in tracks(music):
        line = next(line for line in result.stdout.splitlines() if str(path) in line)
        best = top(api_scores[str(path)], 1)[0]
        assert f"{best} ({api_scores[str(path)][best]:.2f})" in line


def test_global_threshold_keeps_tags_at_or_over_it(tiny_model, music, api_scores):
    path = str(tracks(music)[0])
    scores = api_scores[path]
    limit = round(float(np.median(list(scores.values()))), 4)  # half the tags pass
    result = tag(path, "-f", "jsonl", "-k", "10", "--threshold", limit)
    assert result.exit_code == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    got = [item["tag"] for item in record["tags"]]
    assert got == [label for label in top(scores, 10) if scores[label] >= limit]
    assert 0 < len(got) < 10


def test_per_tag_thresholds_file(tiny_model, music, tmp_path):
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"tag00": 0.0, "tag01": 1.0}))  # a sigmoid never reaches 1
    result = tag(*tracks(music), "-f", "jsonl", "-k", "10", "--thresholds", limits)
    assert result.exit_code == 0, result.stderr
    for line in result.stdout.splitlines():
        assert [item["tag"] for item in json.loads(line)["tags"]] == ["tag00"]
    limits.write_text("[1, 2]")
    bad = tag(tracks(music)[0], "--thresholds", limits)
    assert bad.exit_code == 2 and str(limits) in bad.stderr


def test_folder_is_searched_recursively_for_audio_only(tiny_model, music):
    result = tag(music, "-f", "jsonl")
    assert result.exit_code == 0, result.stderr
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert sorted(paths) == sorted(str(p) for p in tracks(music))


def test_paths_from_stdin(tiny_model, music):
    listing = f"{tracks(music)[2]}\n\n{tracks(music)[0]}\n"
    result = tag("-", "-f", "jsonl", input=listing)
    assert result.exit_code == 0, result.stderr
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert paths == [str(tracks(music)[2]), str(tracks(music)[0])]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_output_file_is_written_whole(tiny_model, music, tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    result = tag(*tracks(music), "-f", fmt, "--output", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    text = target.read_text()
    assert (json.loads(text) if fmt == "json" else text.splitlines()[0] == "path,rank,tag,score")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left behind


def test_output_file_is_untouched_when_the_run_dies(tiny_model, music, tmp_path, monkeypatch):
    """A crash after the first file leaves the old --output file as it was, and no temporary."""
    target = tmp_path / "out.csv"
    previous = "path,rank,tag,score\nold.wav,1,tag00,0.900000\n"  # an earlier run's
    target.write_text(previous)
    real_predict, calls = Tagger.predict, []

    def dies_in_the_second_file(self, windows):
        calls.append(len(windows))
        if len(calls) == 5:  # batches of one window: a.wav has 3, then b.flac starts
            raise KeyboardInterrupt
        return real_predict(self, windows)

    monkeypatch.setattr(Tagger, "predict", dies_in_the_second_file)
    result = tag(*tracks(music), "-f", "csv", "-b", "1", "--output", target)
    assert result.exit_code != 0 and len(calls) == 5
    assert target.read_text() == previous
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_weights_file_carries_its_own_card(tiny_model, music, api_scores, tmp_path):
    weights = tmp_path / "elsewhere.safetensors"
    shutil.copy(tiny_model.with_suffix(".safetensors"), weights)
    result = invoke("tag", tracks(music)[0], "--weights", weights, "-f", "jsonl", "-k", "3")
    assert result.exit_code == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [item["tag"] for item in record["tags"]] == top(api_scores[str(tracks(music)[0])], 3)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    bad = invoke("tag", tracks(music)[0], "--weights", tmp_path / "junk.safetensors")
    assert bad.exit_code == 2 and "junk.safetensors" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_unknown_model_lists_the_known_ones(tiny_model, music):
    result = invoke("tag", tracks(music)[0], "--model", "no-such-model")
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in result.stderr
    assert "tiny-test" in result.stderr and "samplecnn" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--top-k", "0"], ["--format", "xml"], ["--no-such-option"],
                                  ["--threshold", "1.5"], ["--batch-size", "0"]])
def test_bad_options_are_usage_errors(tiny_model, music, args):
    result = tag(tracks(music)[0], *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr


def test_no_audio_found_is_a_usage_error(tiny_model, tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    result = tag(tmp_path)
    assert result.exit_code == 2 and "no audio files" in result.stderr


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory) -> tuple[Path, list[Path], dict[str, str]]:
    """Good tracks around every kind of bad input; maps each bad file to its expected cause."""
    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    good = [write_audio(root / "good1.flac", tone(3.0, RATE), RATE),
            write_audio(root / "good2.mp3", tone(3.0, 16000, 300.0), 16000)]
    (root / "empty.wav").write_bytes(b"")
    (root / "text.mp3").write_text("this is not an mp3\n" * 40)
    full = write_audio(root / "full.ogg", tone(10.0, RATE) +
                       0.01 * rng.standard_normal(10 * RATE).astype(np.float32), RATE)
    data = full.read_bytes()
    (root / "truncated.ogg").write_bytes(data[:int(0.6 * len(data))])
    full.unlink()
    (root / "random.wav").write_bytes(rng.bytes(6000))
    write_audio(root / "short.wav", tone(0.1, RATE), RATE)
    soundfile.write(root / "silence.wav", np.zeros(30 * RATE, np.float32), RATE)
    poisoned = tone(3.0, RATE)
    poisoned[100], poisoned[5000] = np.nan, np.inf
    soundfile.write(root / "nan.wav", poisoned, RATE, subtype="FLOAT")
    soundfile.write(root / "cut.wav", tone(4.0, RATE), RATE, subtype="PCM_16")
    data = (root / "cut.wav").read_bytes()
    (root / "cut.wav").write_bytes(data[:len(data) // 2])  # the header still claims 4 s
    causes = {"empty.wav": "empty", "text.mp3": "not a decodable audio file",
              "random.wav": "not a decodable audio file", "short.wav": "too short",
              "silence.wav": "silent", "nan.wav": "NaN"}
    return root, good, causes


def check_bad_batch(stdout: str, stderr: str, root: Path, good: list[Path],
                    causes: dict[str, str]) -> None:
    assert "Traceback" not in stderr
    tagged = {Path(json.loads(line)["path"]).name for line in stdout.splitlines()}
    assert {p.name for p in good} | {"cut.wav"} <= tagged
    ours = [line for line in stderr.splitlines() if line.startswith("musictag:")]
    for name, cause in causes.items():
        [line] = [line for line in ours if f"{root / name}:" in line]
        assert cause in line
        assert name not in tagged
    [warning] = [line for line in ours if str(root / "cut.wav") in line]
    assert "warning" in warning and "header declares 4.0 s but the file holds 2.0 s" in warning
    # a truncated ogg is either tagged as far as it decodes or reported, never lost silently
    assert "truncated.ogg" in tagged or any(str(root / "truncated.ogg") in line for line in ours)


def test_bad_input_gets_one_line_each_and_the_batch_goes_on(tiny_model, bad_batch):
    root, good, causes = bad_batch
    result = tag(root, "-f", "jsonl")
    assert result.exit_code == 1
    check_bad_batch(result.stdout, result.stderr, root, good, causes)


def test_subprocess_reads_stdin_and_reports_bad_files(tiny_model, bad_batch):
    """The installed entry point as a user runs it: piped output defaults to JSON lines."""
    root, good, causes = bad_batch
    listing = "\n".join(str(p) for p in sorted(root.iterdir())) + "\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "musictag", "tag", "--model", "tiny-test", "-"],
                          input=listing, capture_output=True, text=True, env=env, timeout=120,
                          cwd=REPO)
    assert done.returncode == 1, done.stderr
    check_bad_batch(done.stdout, done.stderr, root, good, causes)
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal


def test_subprocess_all_good_exits_0(tiny_model, music, tmp_path):
    target = tmp_path / "tags.tsv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "musictag", "tag", "--model", "tiny-test",
                           str(music), "--format", "tsv", "--output", str(target), "-k", "1"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = target.read_text().splitlines()
    assert rows[0] == "path\trank\ttag\tscore" and len(rows) == 4


def missing_weights_card(folder: Path, name: str) -> None:
    card = json.loads((REPO / "models" / "samplecnn.json").read_text())
    card["name"] = name
    folder.mkdir()
    (folder / f"{name}.json").write_text(json.dumps(card))


def test_card_without_its_weights_says_how_to_pass_them(tiny_model, music, tmp_path,
                                                         monkeypatch):
    missing_weights_card(tmp_path / "cards", "samplecnn-unshipped")
    monkeypatch.setenv("MUSICTAG_MODELS",
                       os.pathsep.join([str(tiny_model.parent), str(tmp_path / "cards")]))
    result = invoke("tag", tracks(music)[0], "--model", "samplecnn-unshipped")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "samplecnn-unshipped" in line and "not in this install" in line
    assert "--weights FILE" in line


def test_the_default_model_tags_offline_from_the_files_it_ships(tiny_model, music):
    """No --model: the embedded default runs from the package's own files, with no hub."""
    result = invoke("tag", tracks(music)[0], "--format", "jsonl",
                    env={"HF_HUB_OFFLINE": "1", "MUSICTAG_CACHE": str(music / "no-cache")})
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["model"] == "samplecnn" and len(record["tags"]) == 5
    assert not (music / "no-cache").exists()


# --- the Python API ---

def test_tag_scores_are_the_mean_of_window_sigmoids(tiny_model, music):
    tagger = musictag.load_tagger("tiny-test", batch_size=2)
    path = tracks(music)[1]
    result = tagger.tag(path)
    assert isinstance(result, musictag.TagResult)
    windows = np.stack(list(tagger.windows(path)))
    assert windows.shape == (result.n_windows, 6561)
    np.testing.assert_allclose(result.scores, tagger.predict(windows).mean(axis=0), atol=1e-6)

    # predict is the sigmoid of the network's logits, computed here without the Tagger
    tensors, _ = read_weights(tiny_model.with_suffix(".safetensors"))
    model = build_model(tiny_arch()).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(windows))).numpy()
    np.testing.assert_allclose(result.window_scores, expected, atol=1e-5)
    np.testing.assert_allclose(result.scores, expected.mean(axis=0), atol=1e-5)
    assert result.labels == TINY_LABELS
    assert result.select(top_k=3) == sorted(result.score_dict().items(),
                                            key=lambda item: -item[1])[:3]


def test_tag_many_matches_tag(tiny_model, music, bad_batch):
    tagger = musictag.load_tagger("tiny-test", batch_size=3)
    root, _, _ = bad_batch
    paths = [*tracks(music), root / "empty.wav", tracks(music)[0]]
    results = list(tagger.tag_many(paths))
    assert [p for p, _ in results] == paths
    assert isinstance(results[3][1], musictag.audio.AudioError)
    for path, result in results[:3] + results[4:]:
        np.testing.assert_allclose(result.scores, tagger.tag(path).scores, atol=1e-6)


# --- issue 21: hostile inputs -------------------------------------------------------------------

def errors(stderr: str) -> list[str]:
    """The error lines (warnings, about weights say, may come too)."""
    return [line for line in stderr.splitlines() if line.startswith("musictag: error:")]


def undecodable(folder: Path) -> tuple[Path, Path]:
    """A good track and a copy whose name is not valid UTF-8 (byte 0xff), as Python names it."""
    folder.mkdir(exist_ok=True)
    good = write_audio(folder / "a.wav", tone(2.0, RATE), RATE)
    odd = Path(os.fsdecode(os.fsencode(folder) + b"/b_\xff.wav"))
    shutil.copy(good, odd)
    return good, odd


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "table"])
def test_a_file_name_that_is_not_utf8_is_tagged_and_written_losslessly(tiny_model, tmp_path,
                                                                       fmt, monkeypatch):
    """Issue 21.1: JSON holds its bytes as \\udcff escapes; csv, tsv and the table the bytes."""
    monkeypatch.chdir(tmp_path)  # short paths: the table folds long ones
    good, odd = (path.relative_to(tmp_path) for path in undecodable(tmp_path / "d"))
    result = tag("d", "-f", fmt)
    assert result.exit_code == 0, result.stderr
    raw = result.stdout_bytes
    if fmt == "jsonl":
        paths = [json.loads(line)["path"] for line in raw.splitlines()]
    elif fmt == "json":
        paths = [record["path"] for record in json.loads(raw)]
    else:
        assert os.fsencode(odd) in raw and os.fsencode(good) in raw
        return
    assert paths == [str(good), str(odd)]
    assert os.fsencode(paths[1]).endswith(b"/b_\xff.wav")
    assert b"\\udcff" in raw  # the escape, which is UTF-8, not the raw byte
    raw.decode("utf-8")


def test_a_file_name_that_is_not_utf8_is_logged_and_resumed(tiny_model, tmp_path):
    _, odd = undecodable(tmp_path / "d")
    log = tmp_path / "r.jsonl"
    first = tag(tmp_path / "d", "-o", log, "--resume")
    assert first.exit_code == 0, first.stderr
    assert [json.loads(line)["path"] for line in log.read_text().splitlines()][1] == str(odd)
    again = tag(tmp_path / "d", "-o", log, "--resume")
    assert again.exit_code == 0, again.stderr
    assert "2 of 2 files already done" in again.stderr


def test_stdin_paths_keep_their_spaces_and_odd_bytes(tiny_model, tmp_path):
    """Issue 21.10: only the line ending (\\n, or \\r\\n) is taken off a stdin line."""
    spaced = write_audio(tmp_path / " spaced .wav", tone(2.0, RATE), RATE)
    _, odd = undecodable(tmp_path)
    listing = os.fsencode(spaced) + b"\r\n\n" + os.fsencode(odd) + b"\n"
    result = CliRunner().invoke(app, ["tag", "--model", "tiny-test", "-", "-f", "jsonl"],
                                input=listing)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [str(spaced),
                                                                                 str(odd)]


def test_a_fifo_is_named_as_one_not_as_an_empty_file(tiny_model, music, tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    result = tag(tracks(music)[0], fifo, "-f", "jsonl")
    assert result.exit_code == 1
    assert f"{fifo}: not a regular file (FIFO)" in result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_symlinked_folders_are_followed_once_and_loops_end(tiny_model, tmp_path):
    """Issue 21.5: a linked folder is tagged; a link back up or a second link adds nothing."""
    outside, library = tmp_path / "elsewhere" / "album", tmp_path / "lib"
    outside.mkdir(parents=True)
    (library / "own").mkdir(parents=True)
    write_audio(outside / "x.wav", tone(2.0, RATE), RATE)
    own = write_audio(library / "own" / "y.wav", tone(2.0, RATE), RATE)
    (library / "album").symlink_to(outside)
    (library / "same-album").symlink_to(outside)
    (library / "own" / "loop").symlink_to(library)
    result = tag(library, "-f", "jsonl")
    assert result.exit_code == 0, result.stderr
    paths = [json.loads(line)["path"] for line in result.stdout.splitlines()]
    assert sorted(paths) == [str(library / "album" / "x.wav"), str(own)]


def test_a_folder_that_cannot_be_listed_is_reported_and_fails_the_run(tiny_model, tmp_path,
                                                                      monkeypatch):
    library, locked = tmp_path / "lib", tmp_path / "lib" / "locked"
    (library / "open").mkdir(parents=True)
    locked.mkdir()
    write_audio(library / "open" / "a.wav", tone(2.0, RATE), RATE)
    write_audio(locked / "b.wav", tone(2.0, RATE), RATE)
    real_scandir = os.scandir

    def refuse_locked(path="."):  # chmod 000 does not stop root, who may run this suite
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    result = tag(library, "-f", "jsonl")
    assert result.exit_code == 1
    assert f"musictag: {locked}: cannot list this folder (Permission denied)" in result.stderr
    assert [json.loads(line)["path"] for line in result.stdout.splitlines()] == [
        str(library / "open" / "a.wav")]


@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_an_output_that_is_not_musictags_is_refused_untouched(tiny_model, music, tmp_path,
                                                              resume):
    """Issue 21.4: `--output a.flac` named an audio file and destroyed it."""
    victim = tmp_path / "a.flac"
    shutil.copy(tracks(music)[1], victim)
    before = victim.read_bytes()
    result = tag(tracks(music)[0], "--output", victim, *resume)
    assert result.exit_code == 2
    assert errors(result.stderr) == [(f"musictag: error: {victim}: exists and is not a musictag "
                                      "log or result file; not overwriting it")]
    assert victim.read_bytes() == before


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "table"])
def test_an_output_musictag_wrote_may_be_replaced(tiny_model, music, tmp_path, fmt):
    target = tmp_path / f"out.{fmt}"
    for _ in range(2):
        result = tag(tracks(music)[0], "-f", fmt, "--output", target)
        assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("content, message", [
    ('{"tag00": null}', "the threshold of 'tag00' is null, not a number from 0 to 1"),
    ('{"tag00": NaN}', "the threshold of 'tag00' is NaN, not a number from 0 to 1"),
    ('{"tag00": 1.5}', "the threshold of 'tag00' is 1.5, not a number from 0 to 1"),
    ('{"tag00": true}', "the threshold of 'tag00' is true"),
    ('{"tag00": 0.5, "rock": 0.5}', "the model has no tag 'rock' (its tags: tag00, tag01,"),
])
def test_bad_thresholds_files_are_one_line_errors(tiny_model, music, tmp_path, content,
                                                  message):
    """Issue 21.8: null raised a TypeError; NaN and unknown tags passed silently."""
    limits = tmp_path / "limits.json"
    limits.write_text(content)
    result = tag(tracks(music)[0], "--thresholds", limits)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    [line] = errors(result.stderr)
    assert line.startswith(f"musictag: error: {limits}: ") and message in line


@pytest.mark.parametrize("card, message", [
    ({"name": "x"}, "model card 'x' lacks field(s) arch, labels, sample_rate_hz, "
                    "window_samples, weights"),
    ([1, 2], "a model card is a JSON object, not list"),
    ({"name": "x", "arch": {}, "labels": "rock", "sample_rate_hz": 8000,
      "window_samples": 100, "weights": {}}, "model card 'x': labels must be a JSON array"),
    ({"name": "x", "arch": {}, "labels": [], "sample_rate_hz": 0, "window_samples": 100,
      "weights": {}}, "must be positive"),
])
def test_a_broken_card_file_is_a_one_line_error(tiny_model, music, tmp_path, card, message):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    result = invoke("tag", tracks(music)[0], "--model", path)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    [line] = errors(result.stderr)
    assert message in line


def test_an_output_folder_is_refused_before_tagging(tiny_model, music, tmp_path, monkeypatch):
    monkeypatch.setattr(Tagger, "predict", lambda self, windows: pytest.fail("tagged"))
    result = tag(tracks(music)[0], "--output", tmp_path, "--format", "json")
    assert result.exit_code == 2
    assert errors(result.stderr) == [f"musictag: error: {tmp_path}: is a folder; --output "
                                     "names a file"]


def test_a_full_disk_under_the_log_is_one_line(tiny_model, music, tmp_path, monkeypatch):
    from musictag.library import runlog

    monkeypatch.setattr(runlog.os, "write", lambda fd, data: len(data) // 2)
    log = tmp_path / "r.jsonl"
    result = tag(*tracks(music), "--output", log)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    [line] = errors(result.stderr)
    assert line.startswith(f"musictag: error: {log}: cannot write the results (short write")


def test_closed_stdout_is_a_one_line_error(tiny_model, music):
    done = subprocess.run([sys.executable, "-m", "musictag", "tag", "--model", "tiny-test",
                           str(tracks(music)[0])], preexec_fn=lambda: os.close(1),
                          capture_output=False, stderr=subprocess.PIPE, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2
    assert errors(done.stderr) == ["musictag: error: stdout is closed; give --output FILE"]
    assert "Traceback" not in done.stderr
