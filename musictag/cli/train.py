"""``musictag preprocess``, ``train`` and ``evaluate``: labelled datasets in, models out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    Progress,
    TaskID,
)
from rich.table import Table

from ..data import LabelledDataset
from ..data.cache import AudioCache
from ..registry import card_reference, get_card
from .app import (
    USER_ERRORS,
    BatchSizeOption,
    DeviceOption,
    ExactPrecisionOption,
    ModelOption,
    QuietOption,
    VerboseOption,
    WeightsOption,
    app,
    check_exact_or_bf16,
    fail,
    fail_error,
    progress_bar,
    setup_logging,
    stderr,
)

EXIT_INTERRUPTED = 130

DatasetOption = Annotated[str, typer.Option(
    "--dataset", help="mtat (annotations_final.csv + mp3 folders 0-f) or folder (--labels).")]
DataDirOption = Annotated[Path, typer.Option(
    "--data-dir", help="The dataset's folder.", file_okay=False)]
LabelsOption = Annotated[Path | None, typer.Option(
    "--labels", help="labels.csv of --dataset folder: columns path, tags (;-separated), "
                     "optional split.")]
CacheDirOption = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Decoded-audio cache (default: in the user cache folder).")]
WorkersOption = Annotated[int, typer.Option("--workers", min=1, help="Decoding processes.")]
NTagsOption = Annotated[int, typer.Option(
    "--n-tags", min=0, help="Keep the most frequent tags (0: MTAT's 50, or all of a folder's).")]


def _progress(quiet: bool) -> Progress:
    return progress_bar(quiet, info=True)


def _prepared(kind: str, data_dir: Path, labels: Path | None, n_tags: int, cache_dir: Path | None,
              sample_rate_hz: int, splits: list[str], workers: int,
              quiet: bool) -> tuple[LabelledDataset, AudioCache]:
    """The dataset with the clips of ``splits`` decoded into the cache and filtered."""
    from ..data import open_dataset
    from ..data.cache import default_cache_dir

    dataset = open_dataset(kind, data_dir, labels=labels, n_tags=n_tags)
    cache = AudioCache.per_rate(cache_dir or default_cache_dir(data_dir), dataset.audio_root,
                                sample_rate_hz=sample_rate_hz)
    paths = [clip.path for split in splits for clip in dataset.clips(split)]
    with _progress(quiet) as progress:
        task = progress.add_task("decoding", total=len(paths), info="")
        cache.decode(paths, workers=workers,
                     on_progress=lambda done, _: progress.update(task, completed=done))
    return dataset.keep_decoded(cache.lengths(paths), sample_rate_hz), cache


@app.command()
def preprocess(
    data_dir: DataDirOption,
    dataset: DatasetOption = "mtat",
    labels: LabelsOption = None,
    model: ModelOption = None,
    sample_rate: Annotated[int | None, typer.Option(
        "--sample-rate", min=1000, help="Decode to this rate (default: --model's, or 22050).")
    ] = None,
    cache_dir: CacheDirOption = None,
    workers: WorkersOption = 2,
    n_tags: NTagsOption = 0,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Decode every clip of a dataset once into the cache that train and evaluate read."""
    setup_logging(verbose)
    try:
        rate = sample_rate or (get_card(model).sample_rate_hz if model else 22050)
        result, cache = _prepared(dataset, data_dir, labels, n_tags, cache_dir, rate,
                                  ["train", "valid", "test"], workers, quiet)
    except USER_ERRORS as error:
        fail_error(error)
    print(json.dumps({"cache": str(cache.folder), "sample_rate_hz": rate,
                      "tags": len(result.tags), "clips": result.describe()}))


def _training_settings(options: dict[str, Any], config_file: Path | None,
                       assignments: list[str] | None) -> dict[str, Any]:
    from ..training.config import parse_assignments, read_config_file

    settings = read_config_file(config_file) if config_file else {}
    settings.update({key: value for key, value in options.items() if value is not None})
    settings.update(parse_assignments(assignments or []))
    return settings


class _TrainingDisplay:
    """Turns the run's events into a progress bar per epoch and one summary line per epoch."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def _task(self, key: str, description: str, total: int, completed: int = 0) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total,
                                                     completed=completed, info="")
        return self.tasks[key]

    def _drop(self, key: str) -> None:
        if key in self.tasks:
            self.progress.remove_task(self.tasks.pop(key))

    def __call__(self, event: str, values: dict[str, Any]) -> None:
        if event == "decode":
            self.progress.update(self._task("decode", "decoding", values["total"]),
                                 completed=values["done"])
        elif event == "start":
            self._drop("decode")
            clips = values["clips"]
            resumed = f"; resuming after epoch {values['epoch']}" if values["epoch"] else ""
            stderr.print(f"training {values['parameters'] / 1e6:.2f} M parameters on "
                         f"{clips['train']} train / {clips['valid']} valid clips, "
                         f"{values['tags']} tags, {values['device']} {values['precision']}, "
                         f"{values['world_size']} process(es){resumed}", highlight=False)
        elif event == "epoch_start":
            self._task("epoch", f"epoch {values['epoch']}", values["batches"], values["done"])
        elif event == "batch":
            self.progress.update(self._task("epoch", f"epoch {values['epoch']}",
                                            values["batches"]),
                                 completed=values["batch"],
                                 info=f"loss {values['running_loss']:.4f}")
        elif event == "validate":
            self.progress.update(self._task("validate", "validating", values["total"]),
                                 completed=values["done"])
        elif event == "epoch":
            self._drop("epoch")
            self._drop("validate")
            self.progress.console.print(summary_line(values), highlight=False)


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def summary_line(row: dict[str, Any]) -> str:
    note = {"improved": "best", "decayed": "lr / decay", "finished": "schedule ends",
            "waiting": ""}[row["outcome"]]
    return (f"epoch {row['epoch']:3d}  loss {row['loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"ROC-AUC {_auc(row['val_roc_auc'])}  PR-AUC {_auc(row['val_pr_auc'])}  "
            f"lr {row['lr']:.3g}  {row['seconds']:.1f} s  {note}").rstrip()


@app.command()
def train(
    run_dir: Annotated[Path, typer.Option(
        "--run-dir", help="Folder of the run: config, checkpoint, logs and the trained model.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", file_okay=False,
                                                  help="The dataset's folder.")] = None,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="mtat (default) or folder (with --labels).")] = None,
    labels: LabelsOption = None,
    cache_dir: CacheDirOption = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1,
                                                help="Decoding processes.")] = None,
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="TOML or JSON file of training settings (see README).")] = None,
    assignments: Annotated[list[str] | None, typer.Option(
        "--set", help="Any setting as FIELD=VALUE, e.g. arch.n_modules=9. Repeat.")] = None,
    init: Annotated[str | None, typer.Option(
        "--init", help="Fine-tune from this model card (name or .json).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of the trained model.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", "-b", min=2, help="Segments per step and process (paper: 23).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Initial learning rate.")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--max-epochs", min=0, help="Stop after this many epochs (0: when the schedule ends).")
    ] = None,
    dropout: Annotated[float | None, typer.Option("--dropout", min=0.0, max=1.0)] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="auto (mixed on CUDA, fp32 on CPU), fp32, bf16 or fp16.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --run-dir (start it if there is none).")] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Train a tagger with the paper's recipe (or your settings); prints the model card's path.

    Under torchrun every process runs this same command (DistributedDataParallel)."""
    from ..runfolder import RunFolder
    from ..training import TrainingInterrupted, TrainingRun
    from ..training.distributed import environment_rank

    main_process = environment_rank() == 0
    setup_logging(verbose)
    if not main_process:
        quiet = True
    options = {"dataset": dataset, "data_dir": str(data_dir.resolve()) if data_dir else None,
               "labels": str(labels.resolve()) if labels else None,
               "cache_dir": str(cache_dir.resolve()) if cache_dir else None, "workers": workers,
               "init": card_reference(init) if init else None, "name": name,
               "batch_size": batch_size, "lr": lr, "max_epochs": epochs, "seed": seed,
               "precision": precision, "device": device, "arch.dropout": dropout}
    if main_process and not resume and RunFolder(run_dir).started:
        fail(f"{run_dir} already holds a run; add --resume to continue it or choose another "
             "--run-dir")
    progress = _progress(quiet)
    try:
        settings = _training_settings(options, config_file, assignments)
        with progress:
            run = TrainingRun(run_dir, settings, resume=resume,
                              on_event=_TrainingDisplay(progress) if main_process else None)
            card_path = run.train()
    except TrainingInterrupted as stopped:
        stderr.print(f"musictag: {stopped}, continue with --resume", markup=False,
                     highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        stderr.print(f"musictag: interrupted; the last checkpoint in {run_dir} is kept",
                     markup=False, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except USER_ERRORS as error:
        fail_error(error)
    if card_path is not None:
        print(card_path)


def _metrics_table(metrics) -> Table:
    table = Table(show_header=True, header_style="bold")
    for column, justify in (("tag", "left"), ("positives", "right"), ("ROC-AUC", "right"),
                            ("PR-AUC", "right")):
        table.add_column(column, justify=justify)
    for score in metrics.per_tag:
        table.add_row(score.tag, str(score.positives), _auc(score.roc_auc), _auc(score.pr_auc))
    return table


@app.command()
def evaluate(
    data_dir: DataDirOption,
    model: ModelOption = None,
    weights: WeightsOption = None,
    dataset: DatasetOption = "mtat",
    labels: LabelsOption = None,
    split: Annotated[str, typer.Option("--split", help="train, valid, test or all.")] = "test",
    cache_dir: CacheDirOption = None,
    workers: WorkersOption = 2,
    n_tags: NTagsOption = 0,
    device: DeviceOption = "auto",
    precision: ExactPrecisionOption = "fp32",
    batch_size: BatchSizeOption = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Macro ROC-AUC and PR-AUC of a model on a labelled split, with a per-tag table."""
    from ..evaluate import evaluate as run_evaluation
    from .loading import open_tagger

    setup_logging(verbose)
    check_exact_or_bf16(precision)
    tagger = open_tagger(model, weights, device=device, precision=precision,
                         batch_size=batch_size)
    splits = ["train", "valid", "test"] if split == "all" else [split]
    try:
        prepared, cache = _prepared(dataset, data_dir, labels, n_tags, cache_dir,
                                    tagger.card.sample_rate_hz, splits, workers, quiet)
        with _progress(quiet) as progress:
            task = progress.add_task(f"scoring {split}", total=len(prepared.clips(split)),
                                     info="")
            metrics = run_evaluation(tagger, prepared, cache, split=split,
                                     on_progress=lambda done, _: progress.update(
                                         task, completed=done))
    except USER_ERRORS as error:
        fail_error(error)
    if metrics.undefined_tags:
        stderr.print(f"musictag: {len(metrics.undefined_tags)} tag(s) have no positive or no "
                     f"negative clip in the {split} split and are left out of the averages: "
                     f"{', '.join(metrics.undefined_tags[:10])}", markup=False, highlight=False)
    if as_json:
        print(json.dumps({"model": tagger.card.name, "dataset": dataset,
                          "data_dir": str(data_dir), "split": split, **metrics.to_dict()},
                         indent=2))
        return
    console = Console(width=None if os.isatty(1) else 100)
    console.print(_metrics_table(metrics))
    console.print(f"macro ROC-AUC {_auc(metrics.roc_auc)}  macro PR-AUC {_auc(metrics.pr_auc)}  "
                  f"({metrics.n_clips} clips, {len(metrics.per_tag)} tags, split {split})",
                  highlight=False)
