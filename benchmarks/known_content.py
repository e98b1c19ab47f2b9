"""Top-3 hit rate of models on a known-content check set (issue 20, part 4; not part of the suite).

Agreement with the teachers is not truth: this scores each model against what real recordings
are known to hold (``docs/distillation/fetch-check-set.sh`` fetches them and writes the
manifest). A file is a hit when any of its expected tags is in the model's top 3 by track score
(:mod:`musictag.distill.known_content`). Every ``--model`` and ``--teacher`` is scored on its
own; with two teachers or more the equal-weight mean of their track scores (the student's
distillation target) is scored too, as ``teachers' mean``.

    python benchmarks/known_content.py --check-set ~/check-set --model samplecnn \\
        --teacher musicnn-mtt-musicnn --teacher musicnn-mtt-vgg \\
        --teacher won2020-mtat-musicnn -o docs/distillation/known-content.json

A model is a card name, a card's JSON file or a weights file (``.safetensors`` or ``.onnx``,
read with the card stored inside). Prints a table per model and one per content class.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from musictag import load_tagger
from musictag.distill.known_content import (
    TOP_K,
    CheckFile,
    HitReport,
    hit_report,
    mean_scores,
    read_manifest,
    tag_files,
)

ENSEMBLE = "teachers' mean"


def load(spec: str):
    """A tagger for a card name, a card file or a weights file (its own stored card)."""
    if Path(spec).suffix.lower() in (".safetensors", ".onnx"):
        return load_tagger(weights=spec)
    return load_tagger(spec)


def score_all(files: list[CheckFile], models: list[str], teachers: list[str]) -> dict:
    """Track scores of every model, keyed by its spec, plus the teachers' mean."""
    scores = {}
    for spec in dict.fromkeys(models + teachers):
        start = time.perf_counter()
        scores[spec] = tag_files(load(spec), files)
        print(f"{spec}: {len(files)} files in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
    if len(teachers) >= 2:
        scores[ENSEMBLE] = mean_scores([scores[t] for t in teachers])
    return scores


def table(reports: dict[str, HitReport]) -> str:
    width = max(len(name) for name in reports)
    lines = [f"{'model':<{width}}  files hit  hit rate  mean over classes"]
    for name, report in reports.items():
        hits = sum(f.hit for f in report.files)
        lines.append(f"{name:<{width}}  {hits:>4}/{len(report.files):<4}  {report.hit_rate:>8.3f}"
                     f"  {report.class_hit_rate:>17.3f}")
    classes = next(iter(reports.values())).per_class
    names = list(reports)
    lines += ["", f"{'class (files)':<22}" + "".join(f"{n[:20]:>22}" for n in names)]
    for cls, counts in classes.items():
        cells = "".join(f"{reports[n].per_class[cls].n_hits:>18}/{counts.n_files:<3}"
                        for n in names)
        lines.append(f"{cls + f' ({counts.n_files})':<22}{cells}")
    return "\n".join(lines)


def as_json(reports: dict[str, HitReport], check_set: Path, manifest: Path) -> dict:
    def rel(path: str) -> str:
        return str(Path(path).relative_to(manifest.parent))

    return {
        "check_set": str(check_set), "manifest": manifest.name, "k": TOP_K,
        "hit": f"any expected tag in the model's top {TOP_K} by track score",
        "n_files": len(next(iter(reports.values())).files),
        "models": {name: {
            "hit_rate": round(r.hit_rate, 4), "class_hit_rate": round(r.class_hit_rate, 4),
            "per_class": {c: {"n_files": h.n_files, "n_hits": h.n_hits,
                              "hit_rate": round(h.hit_rate, 4)} for c, h in r.per_class.items()},
            "files": [{"path": rel(f.path), "class": f.content_class,
                       "expected": list(f.expected), "top": list(f.top), "hit": f.hit}
                      for f in r.files],
        } for name, r in reports.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-set", type=Path, required=True,
                        help="folder with check-set.tsv, or the manifest itself")
    parser.add_argument("--model", action="append", default=[], help="a model to score")
    parser.add_argument("--teacher", action="append", default=[],
                        help="a teacher: scored alone and in the teachers' mean")
    parser.add_argument("-o", "--output", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    if not args.model and not args.teacher:
        parser.error("give at least one --model or --teacher")
    manifest = args.check_set / "check-set.tsv" if args.check_set.is_dir() else args.check_set
    files = read_manifest(manifest)
    scores = score_all(files, args.model, args.teacher)
    reports = {name: hit_report(files, s, manifest=manifest) for name, s in scores.items()}
    print(table(reports))
    if args.output:
        args.output.write_text(json.dumps(as_json(reports, args.check_set, manifest),
                                          indent=1) + "\n")


if __name__ == "__main__":
    main()
