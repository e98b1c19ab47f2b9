"""Dataset readers and the preprocessing cache, on data generated in MTAT's real layout.

:func:`write_mtat` is also the dataset of tests/test_train.py and tests/test_ddp.py: clips whose
tags are audible (each tag is a tone of its own pitch), in mp3, ogg and wav.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import SHARED

from musictag.data import open_dataset
from musictag.data.cache import AudioCache
from musictag.data.folder import hashed_split
from musictag.data.mtat import EMPTY_CLIPS, MIN_CLIP_S, SPLIT_OF_FOLDER, read_annotations

FOLDERS = "0123456789abcdef"
#: The 50 tags, as the shipped card orders them; the 8 rarer columns stand for MTAT's other 138.
TAGS50 = json.loads((Path(__file__).resolve().parents[1] / "models" / "samplecnn.json")
                    .read_text())["labels"]
RARE_TAGS = ["duet", "jazz", "blues", "funky", "chant", "horns", "mellow", "bongos"]
SOURCE_RATE_HZ = 8000
TONES_HZ = np.linspace(180.0, 3600.0, len(TAGS50))


def clip_tags(index: int) -> list[int]:
    """Two or three of the 50 tags per clip, so that every tag recurs in every split."""
    first, second = index % 50, (index * 7 + 3) % 50
    tags = {first, second}
    if index % 3 == 0:
        tags.add((index * 13 + 11) % 50)
    return sorted(tags)


def synthesise(tags: list[int], seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SOURCE_RATE_HZ)) / SOURCE_RATE_HZ
    signal = 0.01 * rng.standard_normal(len(t))
    for tag in tags:
        tremolo = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3.0) * t)
        signal += rng.uniform(0.12, 0.25) * tremolo * np.sin(
            2 * np.pi * TONES_HZ[tag] * t + rng.uniform(0, 2 * np.pi))
    return (signal / max(1.0, np.abs(signal).max() / 0.9)).astype(np.float32)


def write_mtat(root: Path, *, clips_per_folder: int = 10, seconds: float = 29.5,
               seed: int = 0) -> dict:
    """MTAT's layout: ``annotations_final.csv`` (tab-separated, quoted like the real one) and
    folders 0-f. Besides the labelled clips: per folder one clip with only rare tags, a 20 s clip,
    and the three empty mp3s of the real distribution. Returns, per split, the clips the rule
    keeps and the clips it keeps until they are decoded and found shorter than 29.1 s."""
    rng = np.random.default_rng(seed)
    rows = []
    expected: dict[str, dict[str, set[str]]] = {
        "kept": {"train": set(), "valid": set(), "test": set()},
        "short": {"train": set(), "valid": set(), "test": set()}}
    index = 0
    for folder in FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(clips_per_folder + 2):
            extension = (".mp3", ".wav", ".ogg", ".wav")[index % 4]
            path = f"{folder}/artist_{folder}-album-{k:02d}-track-{index}-0-29{extension}"
            rare_only = k == clips_per_folder
            short = k == clips_per_folder + 1
            tags = [] if rare_only else clip_tags(index)
            write_clip(root / path, synthesise(tags, 20.0 if short else seconds, rng))
            rare = [RARE_TAGS[FOLDERS.index(folder) % len(RARE_TAGS)]] if rare_only else []
            rows.append((index, path, tags, rare))
            if not rare_only:
                expected["short" if short else "kept"][SPLIT_OF_FOLDER[folder]].add(path)
            index += 1
    for path in sorted(EMPTY_CLIPS):
        (root / path).write_bytes(b"")
        rows.append((index, path, clip_tags(index), []))
        index += 1
    columns = TAGS50[25:] + RARE_TAGS + TAGS50[:25]  # column order is not frequency order
    with open(root / "annotations_final.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL)
        writer.writerow(["clip_id", *columns, "mp3_path"])
        for clip_id, path, tags, rare in rows:
            names = {TAGS50[t] for t in tags} | set(rare)
            writer.writerow([clip_id, *(int(c in names) for c in columns), path])
    return expected


def write_clip(path: Path, samples: np.ndarray) -> Path:
    kind = {".mp3": ("MP3", "MPEG_LAYER_III"), ".ogg": ("OGG", "VORBIS"),
            ".wav": ("WAV", "PCM_16")}[path.suffix]
    soundfile.write(str(path), samples, SOURCE_RATE_HZ, format=kind[0], subtype=kind[1])
    return path


def write_folder(root: Path, *, n_clips: int = 40, seconds: float = 3.0, seed: int = 1,
                 tags: tuple[int, ...] = (0, 9, 18, 27, 36), split_column: bool = True) -> Path:
    """A user's folder: wav files, one audible tag each, and ``labels.csv``; returns its path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clips):
        tag = tags[i % len(tags)]
        path = f"audio/song{i:02d}.wav"
        (root / "audio").mkdir(parents=True, exist_ok=True)
        write_clip(root / path, synthesise([tag], seconds, rng))
        rows.append({"path": path, "tags": TAGS50[tag],
                     "split": "valid" if i % 8 == 0 else "train"})
    labels = root / "labels.csv"
    with open(labels, "w", newline="") as handle:
        fields = ["path", "tags", "split"] if split_column else ["path", "tags"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return labels


_GENERATED: dict[str, tuple[Path, dict]] = {}


def generated_mtat(tmp_path_factory) -> tuple[Path, dict]:
    """One generated MTAT per test session, whichever test module asks first."""
    if "mtat" not in _GENERATED:
        root = tmp_path_factory.mktemp("mtat")
        _GENERATED["mtat"] = (root, write_mtat(root))
    return _GENERATED["mtat"]


@pytest.fixture
def mtat(tmp_path_factory) -> tuple[Path, dict]:
    return generated_mtat(tmp_path_factory)


def test_mtat_rule_keeps_tagged_clips_by_folder_and_drops_short_and_empty(mtat, tmp_path,
                                                                            caplog):
    root, expected = mtat
    with caplog.at_level(logging.WARNING):
        dataset = open_dataset("mtat", root)
    assert len(dataset.tags) == 50 and set(dataset.tags) == set(TAGS50)
    names, _, matrix = read_annotations(root / "annotations_final.csv")
    counts = [int(matrix[:, names.index(tag)].sum()) for tag in dataset.tags]
    assert counts == sorted(counts, reverse=True)
    for split in ("train", "valid", "test"):
        assert {c.path for c in dataset.splits[split]} == \
            expected["kept"][split] | expected["short"][split]
    empty = [r.getMessage() for r in caplog.records if "empty file" in r.getMessage()]
    assert len(empty) == 3 and all(any(p in m for m in empty) for p in EMPTY_CLIPS)

    cache = AudioCache(tmp_path / "cache", dataset.audio_root, sample_rate_hz=8000)
    paths = [c.path for c in dataset.clips("all")]
    cache.decode(paths, workers=2)
    kept = dataset.keep_decoded(cache.lengths(paths), 8000)
    assert {s: {c.path for c in clips} for s, clips in kept.splits.items()} == expected["kept"]
    assert all(len(cache.samples(c.path)) >= MIN_CLIP_S * 8000 for c in kept.clips("all"))
    clip = kept.splits["test"][0]
    assert kept.targets([clip])[0].nonzero()[0].tolist() == list(clip.tags)


def test_mtat_names_missing_clips_and_foreign_files(tmp_path):
    root = tmp_path / "mtat"
    expected = write_mtat(root, clips_per_folder=1, seconds=1.0)
    missing = sorted(expected["kept"]["valid"])[0]
    (root / missing).unlink()
    with pytest.raises(ValueError, match=r"1 clip\(s\) of annotations_final.csv are missing "
                                         r"\(first: c/"):
        open_dataset("mtat", root)
    (root / "annotations_final.csv").write_text("id,tags\n1,0\n")
    with pytest.raises(ValueError, match="not MTAT's annotations_final.csv"):
        open_dataset("mtat", root)
    with pytest.raises(ValueError, match="cannot read MTAT annotations"):
        open_dataset("mtat", tmp_path / "nowhere")


@pytest.mark.skipif(not (SHARED / "data" / "mtat").is_dir(), reason="shared/data/mtat absent")
def test_authors_split_lists_follow_the_folder_rule():
    """What the lists can show without annotations_final.csv: sizes, folders, no empty files,
    and the tag order of the shipped card."""
    folder = SHARED / "data" / "mtat"
    lists = {split: (folder / f"{split}.txt").read_text().split()
             for split in ("train", "valid", "test")}
    assert {split: len(paths) for split, paths in lists.items()} == \
        {"train": 15244, "valid": 1529, "test": 4332}
    for split, paths in lists.items():
        assert {SPLIT_OF_FOLDER[path.split("/")[0]] for path in paths} == {split}
        assert len(set(paths)) == len(paths) and not EMPTY_CLIPS & set(paths)
    train_folders = {path.split("/")[0] for path in lists["train"]}
    assert train_folders == set("0123456789ab")
    assert (folder / "tags50.txt").read_text().splitlines() == TAGS50


def test_folder_dataset_orders_tags_by_frequency_and_splits_by_column_or_hash(tmp_path):
    labels = write_folder(tmp_path, n_clips=10, seconds=1.5)
    dataset = open_dataset("folder", tmp_path, labels=labels)
    # training counts: piano, male and voice 2 each (ties by name), guitar and male vocal 1
    assert dataset.tags == [TAGS50[18], TAGS50[9], TAGS50[36], TAGS50[0], TAGS50[27]]
    assert [c.path for c in dataset.splits["valid"]] == ["audio/song00.wav", "audio/song08.wav"]
    assert dataset.splits["test"] == []
    assert open_dataset("folder", tmp_path, labels=labels, n_tags=2).tags == dataset.tags[:2]

    hashed = write_folder(tmp_path, n_clips=10, seconds=1.5, split_column=False)
    by_hash = open_dataset("folder", tmp_path, labels=hashed)
    for split, clips in by_hash.splits.items():
        assert all(hashed_split(c.path) == split for c in clips)


def test_folder_dataset_errors_name_the_file_and_line(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,tags,split\na.wav,rock,train\nb.wav,pop,later\n")
    with pytest.raises(ValueError, match=r"labels.csv:3: split 'later'"):
        open_dataset("folder", tmp_path, labels=labels)
    labels.write_text("file,labels\na.wav,rock\n")
    with pytest.raises(ValueError, match="needs a header with columns path and tags"):
        open_dataset("folder", tmp_path, labels=labels)
    labels.write_text("path,tags\na.wav,rock\n")
    with pytest.raises(ValueError, match=r"missing \(first: a.wav\)"):
        open_dataset("folder", tmp_path, labels=labels)
    with pytest.raises(ValueError, match="needs labels"):
        open_dataset("folder", tmp_path)


def test_cache_decodes_once_resumes_and_remembers_failures(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_clip(tmp_path / f"{name}.ogg", synthesise([1], 2.0, rng))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    cache = AudioCache(tmp_path / "cache", tmp_path, sample_rate_hz=4000)
    paths = ["a.ogg", "b.ogg", "c.ogg", "broken.wav"]
    seen: list[tuple[int, int]] = []
    with caplog.at_level(logging.WARNING):
        cache.decode(paths, workers=1, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert any("broken.wav" in r.getMessage() for r in caplog.records)
    lengths = cache.lengths(paths)
    assert set(lengths) == {"a.ogg", "b.ogg", "c.ogg"} and lengths["a.ogg"] == 8000
    assert cache.samples("a.ogg").dtype == np.float16

    cache.array_file("b.ogg").unlink()
    decoded_before = {p: cache.array_file(p).stat().st_mtime_ns for p in ("a.ogg", "c.ogg")}
    seen.clear()
    cache.decode(paths, workers=1, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 4), (4, 4)]
    assert {p: cache.array_file(p).stat().st_mtime_ns for p in decoded_before} == decoded_before
    segment = cache.segment("a.ogg", 7000, 2000)
    assert segment.dtype == np.float32 and segment.shape == (2000,) and not segment[1000:].any()
    with pytest.raises(ValueError, match="not in the cache"):
        cache.lengths(["d.ogg"])
