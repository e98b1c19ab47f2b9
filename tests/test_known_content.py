"""Known-content check set: manifest parsing, top-k hit arithmetic, tagging and the benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_LABELS, TINY_RATE_HZ, tone, write_audio

from musictag import load_tagger
from musictag.distill.known_content import (
    KnownContentError,
    hit_report,
    mean_scores,
    read_manifest,
    tag_files,
)

REPO = Path(__file__).resolve().parents[1]
HEADER = "path\tclass\tsource\tlicence\ttags\tmade_from\n"


def make_set(folder: Path, rows: list[tuple[str, str, str]], *, seconds: float = 2.0) -> Path:
    """Audio files (tones at different pitches) and a manifest of (name, class, tags) rows."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [HEADER]
    for i, (name, cls, tags) in enumerate(rows):
        write_audio(folder / name, tone(seconds, TINY_RATE_HZ, 110.0 * (i + 1)), TINY_RATE_HZ)
        lines.append(f"{name}\t{cls}\tdeb:test=1\tMIT\t{tags}\tgenerated\n")
    manifest = folder / "check-set.tsv"
    manifest.write_text("".join(lines))
    return manifest


def scores_for(files, tables: list[dict[str, float]]) -> dict[Path, dict[str, float]]:
    return {f.path: table for f, table in zip(files, tables, strict=True)}


def test_hit_rates_count_any_expected_tag_in_the_top_k(tmp_path):
    manifest = make_set(tmp_path, [("a.wav", "violin", "violin|strings"),
                                   ("b.wav", "violin", "violin"),
                                   ("c.wav", "violin", "solo"),
                                   ("d.wav", "voice", "voice|female")])
    files = read_manifest(manifest)
    base = {"violin": 0.1, "strings": 0.1, "solo": 0.1, "voice": 0.1, "female": 0.1,
            "guitar": 0.5, "piano": 0.4, "drums": 0.3}
    tables = [
        {**base, "strings": 0.35},            # 3rd: hit through the second expected tag
        {**base, "violin": 0.9},              # 1st: hit
        {**base, "solo": 0.2},                # 4th: a miss at k=3, a hit at k=4
        {**base, "strings": 0.28, "female": 0.25, "voice": 0.2},  # 5th and 6th: a miss
    ]
    report = hit_report(files, scores_for(files, tables), manifest=manifest)
    assert [f.hit for f in report.files] == [True, True, False, False]
    assert report.hit_rate == pytest.approx(0.5)
    assert report.per_class["violin"].n_hits == 2 and report.per_class["violin"].n_files == 3
    assert report.class_hit_rate == pytest.approx((2 / 3 + 0) / 2)
    assert report.files[0].top == ("guitar", "piano", "strings")
    assert hit_report(files, scores_for(files, tables), k=4).hit_rate == pytest.approx(0.75)


def test_ties_are_broken_by_label_name(tmp_path):
    files = read_manifest(make_set(tmp_path, [("a.wav", "x", "cello")]))
    flat = {label: 0.5 for label in ("drums", "cello", "beat", "violin")}
    report = hit_report(files, scores_for(files, [flat]))
    assert report.files[0].top == ("beat", "cello", "drums")
    assert report.hit_rate == 1.0


@pytest.mark.parametrize(("text", "message"), [
    ("path\ttags\na.wav\tpiano\n", "lacks column(s) class"),
    (HEADER + "a.wav\tpiano\tdeb:x=1\tMIT\t\tnotes\n", "row 2: no tags"),
    (HEADER + "a.wav\tpiano\tdeb:x=1\tMIT\tpiano\tnotes\n"
              "missing.wav\tpiano\tdeb:x=1\tMIT\tpiano\tnotes\n", "row 3 (missing.wav): no such"),
    (HEADER + "a.wav\tpiano\tdeb:x=1\tMIT\t|\tnotes\n", "row 2 (a.wav): no expected tag"),
    (HEADER + "a.wav\tpiano\tdeb:x=1\tMIT\tpiano\tnotes\textra\n", "row 2: 7 fields for 6"),
    (HEADER + "a.wav\tpiano\tdeb:x=1\tMIT\tpiano\tn\na.wav\tpiano\tdeb:x=1\tMIT\tpiano\tn\n",
     "row 3 (a.wav): the file is listed twice"),
    (HEADER, "lists no file"),
])
def test_manifest_errors_name_the_file_and_row(tmp_path, text, message):
    write_audio(tmp_path / "a.wav", tone(1.0, TINY_RATE_HZ), TINY_RATE_HZ)
    manifest = tmp_path / "check-set.tsv"
    manifest.write_text(text)
    with pytest.raises(KnownContentError, match="check-set.tsv") as caught:
        read_manifest(manifest)
    assert message in str(caught.value)


def test_a_tag_the_model_lacks_is_an_error_not_a_miss(tmp_path):
    manifest = make_set(tmp_path, [("a.wav", "violin", "violin"), ("b.wav", "cello", "celo")])
    files = read_manifest(manifest)
    tables = [{"violin": 0.9, "cello": 0.1}, {"violin": 0.9, "cello": 0.1}]
    with pytest.raises(KnownContentError, match=r"row 3 \(b.wav\): the model has no tag 'celo'"):
        hit_report(files, scores_for(files, tables), manifest=manifest)


def test_mean_scores_averages_and_refuses_different_labels(tmp_path):
    files = read_manifest(make_set(tmp_path, [("a.wav", "x", "piano")]))
    first = scores_for(files, [{"piano": 0.2, "drums": 0.9}])
    second = scores_for(files, [{"piano": 0.8, "drums": 0.1}])
    assert mean_scores([first, second])[files[0].path] == pytest.approx(
        {"piano": 0.5, "drums": 0.5})
    with pytest.raises(KnownContentError, match="different files or labels"):
        mean_scores([first, scores_for(files, [{"piano": 0.8}])])


def test_a_real_tagger_hits_its_own_top_tag_and_misses_its_last(tmp_path, tiny_model):
    tagger = load_tagger("tiny-test")
    folder = tmp_path / "set"
    make_set(folder, [("a.wav", "one", "tag00"), ("b.wav", "two", "tag00")], seconds=3.0)
    order_a = [label for label, _ in tagger.tag(folder / "a.wav").select(top_k=None)]
    order_b = [label for label, _ in tagger.tag(folder / "b.wav").select(top_k=None)]
    manifest = make_set(folder, [("a.wav", "one", order_a[0]), ("b.wav", "two", order_b[-1])],
                        seconds=3.0)
    files = read_manifest(manifest)
    seen: list[Path] = []
    scores = tag_files(tagger, files, on_file=seen.append)
    assert seen == [f.path for f in files]
    report = hit_report(files, scores, manifest=manifest)
    assert [f.hit for f in report.files] == [True, False]
    assert report.files[0].top == tuple(order_a[:3])
    assert set(scores[files[0].path]) == set(TINY_LABELS)


def test_an_unreadable_file_is_an_error(tmp_path, tiny_model):
    manifest = make_set(tmp_path, [("a.wav", "x", "tag01")])
    (tmp_path / "a.wav").write_bytes(b"not audio at all")
    with pytest.raises(KnownContentError, match="a.wav: cannot be tagged"):
        tag_files(load_tagger("tiny-test"), read_manifest(manifest))


@pytest.mark.slow
def test_benchmark_prints_and_writes_the_teachers_mean(tmp_path, tiny_model):
    make_set(tmp_path / "set", [("a.wav", "one", "tag00|tag01|tag02"),
                                ("b.wav", "two", "tag03")])
    output = tmp_path / "report.json"
    env = {**os.environ, "MUSICTAG_MODELS": str(tiny_model.parent)}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "known_content.py"), "--check-set",
         str(tmp_path / "set"), "--model", "tiny-test", "--teacher", "tiny-test",
         "--teacher", str(tiny_model), "-o", str(output)],
        capture_output=True, text=True, env=env, check=True)
    assert "teachers' mean" in done.stdout and "one (1)" in done.stdout
    report = json.loads(output.read_text())
    models = report["models"]
    assert set(models) == {"tiny-test", str(tiny_model), "teachers' mean"}
    # The same weights twice: their mean ranks tags exactly as each does.
    assert models["teachers' mean"]["files"] == models["tiny-test"]["files"]
    assert models["tiny-test"]["files"][0]["path"] == "a.wav"
    assert report["n_files"] == 2
