"""A user's own music: a folder of audio and a ``labels.csv`` naming each file's tags.

``labels.csv`` has a header and the columns ``path`` (relative to the data folder) and ``tags``
(separated by ``;``, may be empty), and optionally ``split`` (train, valid or test). Without a
split column each file is placed by a hash of its path (80 % train, 10 % valid, 10 % test), so
adding files never moves the old ones between splits. Tags are ordered by how many training
files carry them, most frequent first.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from pathlib import Path

from ..audio import MIN_DURATION_S
from ..errors import RunError
from . import SPLITS, Clip, LabelledDataset

TAG_SEPARATOR = ";"


def hashed_split(path: str) -> str:
    bucket = int(hashlib.sha1(path.encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def read_labels(path: Path) -> list[tuple[str, list[str], str]]:
    """``(audio path, tags, split)`` per row; one clear error naming the line for bad rows."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = set(reader.fieldnames or [])
            if not {"path", "tags"} <= fields:
                raise RunError(f"{path}: needs a header with columns path and tags "
                               f"(found {', '.join(sorted(fields)) or 'none'})")
            rows = []
            for line, row in enumerate(reader, start=2):
                audio = (row["path"] or "").strip()
                if not audio:
                    raise RunError(f"{path}:{line}: empty path")
                tags = [t.strip() for t in (row["tags"] or "").split(TAG_SEPARATOR) if t.strip()]
                split = (row.get("split") or "").strip() or hashed_split(audio)
                if split not in SPLITS:
                    raise RunError(f"{path}:{line}: split {split!r} is not one of "
                                   f"{', '.join(SPLITS)}")
                rows.append((audio, tags, split))
    except OSError as error:
        raise RunError(f"{path}: cannot read labels ({error.strerror})") from None
    if not rows:
        raise RunError(f"{path}: no labelled files")
    return rows


def load_folder(data_dir: str | os.PathLike, labels: str | os.PathLike, *,
                n_tags: int | None = None) -> LabelledDataset:
    """The folder's clips; ``n_tags`` keeps only the most frequent tags (all when None)."""
    data_dir, labels = Path(data_dir), Path(labels)
    rows = read_labels(labels)
    missing = [audio for audio, _, _ in rows if not (data_dir / audio).is_file()]
    if missing:
        raise RunError(f"{data_dir}: {len(missing)} file(s) named in {labels.name} are missing "
                       f"(first: {missing[0]})")
    counts = Counter(tag for _, tags, split in rows if split == "train" for tag in set(tags))
    if not counts:
        raise RunError(f"{labels}: no tags on any training file")
    vocabulary = sorted(counts, key=lambda tag: (-counts[tag], tag))[:n_tags]
    index = {tag: i for i, tag in enumerate(vocabulary)}
    splits: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    for audio, tags, split in rows:
        positives = tuple(sorted({index[tag] for tag in tags if tag in index}))
        splits[split].append(Clip(path=Path(audio).as_posix(), tags=positives))
    return LabelledDataset(kind="folder", audio_root=data_dir, tags=vocabulary, splits=splits,
                           min_duration_s=MIN_DURATION_S)
