"""MagnaTagATune as it is distributed: ``annotations_final.csv`` and mp3 folders ``0``-``f``.

The split is the one of the paper's authors (and of most MTAT results since): the 50 most frequent
of the 188 tags, folders 0-b for training, c for validation and d-f for testing, keeping only clips
with at least one of the 50 tags that decode to at least 29.1 s. It yields the authors' lists of
15244 / 1529 / 4332 clips. Three mp3s of the distribution are empty files; they are skipped with a
warning rather than failing the run.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import RunError
from . import Clip, LabelledDataset

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations_final.csv"
N_TAGS = 50
#: The paper trims every clip to 29.1 s; shorter ones are left out. The 0.05 s allowance absorbs
#: the frame or two by which mp3 decoders disagree on a clip's length.
MIN_CLIP_S = 29.1 - 0.05
SPLIT_OF_FOLDER = {**dict.fromkeys("0123456789ab", "train"), "c": "valid",
                   **dict.fromkeys("def", "test")}
#: Zero-byte files in mp3.zip.001-003.
EMPTY_CLIPS = frozenset({
    "6/norine_braun-now_and_zen-08-gently-117-146.mp3",
    "8/jacob_heringman-josquin_des_prez_lute_settings-19-gintzler__pater_noster-204-233.mp3",
    "9/american_baroque-dances_and_suites_of_rameau_and_couperin-25-le_petit_rien_xiveme_ordre_"
    "couperin-88-117.mp3",
})


def read_annotations(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Tag names, mp3 paths and the ``(n_clips, n_tags)`` 0/1 matrix of the tab-separated file."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except OSError as error:
        raise RunError(f"{path}: cannot read MTAT annotations ({error.strerror})") from None
    if not rows or len(rows[0]) < 3 or rows[0][0] != "clip_id" or rows[0][-1] != "mp3_path":
        raise RunError(f"{path}: not MTAT's annotations_final.csv (expected tab-separated "
                       "columns clip_id, tags..., mp3_path)")
    header = rows[0]
    tags = header[1:-1]
    paths, matrix = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise RunError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
        try:
            matrix.append([int(value) for value in row[1:-1]])
        except ValueError:
            raise RunError(f"{path}:{line}: tag columns must be 0 or 1") from None
        paths.append(row[-1])
    return tags, paths, np.array(matrix, dtype=np.uint8).reshape(len(paths), len(tags))


def most_frequent(counts: np.ndarray, n: int) -> list[int]:
    """Column indices of the ``n`` largest counts, largest first; ties keep column order."""
    return [int(i) for i in np.argsort(-counts, kind="stable")[:n]]


def audio_root(data_dir: Path) -> Path:
    """Where folders 0-f are: the data folder itself, or its ``mp3/`` subfolder."""
    return data_dir / "mp3" if not (data_dir / "0").is_dir() and (data_dir / "mp3").is_dir() \
        else data_dir


def load_mtat(data_dir: str | os.PathLike, *, n_tags: int = N_TAGS) -> LabelledDataset:
    data_dir = Path(data_dir)
    names, paths, matrix = read_annotations(data_dir / ANNOTATIONS)
    if n_tags > len(names):
        raise RunError(f"{data_dir / ANNOTATIONS}: {len(names)} tags, fewer than {n_tags}")
    columns = most_frequent(matrix.sum(axis=0), n_tags)
    root = audio_root(data_dir)
    splits: dict[str, list[Clip]] = {"train": [], "valid": [], "test": []}
    missing = []
    for path, row in zip(paths, matrix[:, columns], strict=True):
        split = SPLIT_OF_FOLDER.get(path.split("/")[0])
        positives = tuple(int(i) for i in np.flatnonzero(row))
        if split is None or not positives:
            continue
        if path in EMPTY_CLIPS:
            log.warning("%s: skipped (an empty file in the MTAT distribution)", root / path)
            continue
        if not (root / path).is_file():
            missing.append(path)
            continue
        splits[split].append(Clip(path=path, tags=positives))
    if missing:
        raise RunError(f"{root}: {len(missing)} clip(s) of {ANNOTATIONS} are missing (first: "
                       f"{missing[0]}); unpack all of mp3.zip.001-003 into the data folder")
    return LabelledDataset(kind="mtat", audio_root=root, tags=[names[i] for i in columns],
                           splits=splits, min_duration_s=MIN_CLIP_S)
