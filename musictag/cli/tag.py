"""``musictag tag``: files and folders in, tags out."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..audio import AudioError
from ..errors import MusictagError
from ..inference import BACKENDS
from ..library.run import LibraryRun
from ..output import MACHINE_FORMATS, PATH_ERRORS, RecordWriter, tag_records
from ..scale import tag_outcomes
from . import engine as engines
from .app import (
    EXIT_SOME_FAILED,
    BatchSizeOption,
    DeviceOption,
    ModelOption,
    QuietOption,
    VerboseOption,
    WeightsOption,
    app,
    fail,
    progress_bar,
    setup_logging,
    stderr,
)
from .library import (
    DryRunOption,
    Id3v23Option,
    ResumeOption,
    RetryFailedOption,
    ShardOption,
    TagFieldOption,
    WriteTagsOption,
    fail_run,
    start_run,
)
from .loading import card_name, collect_paths, open_card, open_tagger

BackendOption = Annotated[str, typer.Option(
    "--backend", help=f"{'|'.join(BACKENDS)}: auto runs onnxruntime when the model has an "
                      f"ONNX file (--weights FILE.onnx, or one shipped with its card) and "
                      f"torch otherwise.")]
PrecisionOption = Annotated[str, typer.Option(
    "--precision", help="auto: the fastest path this CPU has that was measured within 0.02 of "
                        "fp32 on real music (bf16 with AMX, int8 with VNNI; -v says which); "
                        "fp32: always the exact path; bf16 (torch); int8 (the int8 ONNX file).")]
ThreadsOption = Annotated[int | None, typer.Option(
    "--threads", min=1, help="Compute threads (default: every core, one left to decoding "
                             "from 8 cores on).")]


def read_thresholds(path: Path) -> dict[str, float]:
    """The --thresholds file: a JSON object of tag -> a number from 0 to 1, or exit 2.

    ``null`` used to end in a traceback, and NaN would pass no score: a tag that silently never
    appears. Whether the tags are the model's is checked once it is loaded (:func:`check_tags`).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        fail(f"{path}: not a JSON object of tag -> threshold ({error})")
    if not isinstance(data, dict):
        fail(f"{path}: not a JSON object of tag -> threshold")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            fail(f"{path}: the threshold of {name!r} is {json.dumps(value)}, not a number "
                 "from 0 to 1")
    return {name: float(value) for name, value in data.items()}


def check_tags(limits: dict[str, float], labels: list[str], path: Path) -> None:
    """Exit 2 when the thresholds name a tag the model lacks: a misspelt tag would never be
    chosen, and with --write-tags it would quietly empty the field."""
    unknown = sorted(set(limits) - set(labels))
    if unknown:
        fail(f"{path}: the model has no tag {', '.join(map(repr, unknown))} "
             f"(its tags: {', '.join(labels)})")


def render_table(records: list[dict]) -> Table:
    table = Table(show_header=True, header_style="bold")
    table.add_column("file", overflow="fold")
    table.add_column("tags (score)")
    table.add_column("length", justify="right")
    for record in records:
        tags = ", ".join(f"{item['tag']} ({item['score']:.2f})" for item in record["tags"])
        table.add_row(record["path"], tags or "-", f"{record['duration_s']:.0f} s")
    return table


@app.command()
def tag(
    paths: Annotated[list[str], typer.Argument(
        help="Audio files or folders (searched recursively); - reads paths from stdin.")],
    model: ModelOption = None,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    batch_size: BatchSizeOption = 16,
    backend: BackendOption = "auto",
    precision: PrecisionOption = "auto",
    threads: ThreadsOption = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1,
                                       help="At most this many tags per file.")] = 5,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", min=0.0, max=1.0, help="Only tags scoring at least this.")] = None,
    thresholds: Annotated[Path | None, typer.Option(
        "--thresholds", help="JSON file of per-tag thresholds {tag: value}.")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", help="table, json, jsonl, csv or tsv "
                               "(default: table on a terminal, jsonl when piped).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write results here instead of stdout: jsonl as a crash-safe "
                               "log appended file by file, other formats atomically.")] = None,
    all_scores: Annotated[bool, typer.Option(
        "--all-scores", help="Include every label's score in json/jsonl records.")] = False,
    resume: ResumeOption = False,
    retry_failed: RetryFailedOption = False,
    shard: ShardOption = None,
    write_tags: WriteTagsOption = False,
    tag_field: TagFieldOption = None,
    id3v23: Id3v23Option = False,
    dry_run: DryRunOption = False,
    engine: engines.EngineOption = "local",
    ray_address: engines.RayAddressOption = None,
    actors: engines.ActorsOption = None,
    cpus_per_actor: engines.CpusPerActorOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Tag audio files and print their top tags."""
    setup_logging(verbose)
    chosen = engines.Engine.choose(engine, address=ray_address, actors=actors,
                           cpus_per_actor=cpus_per_actor)
    if output is None and sys.stdout is None:
        fail("stdout is closed; give --output FILE")
    fmt = fmt or ("table" if output is None and sys.stdout.isatty() else "jsonl")
    if fmt not in ("table", *MACHINE_FORMATS):
        fail(f"unknown format {fmt!r}; choose table, {', '.join(MACHINE_FORMATS)}")
    if threshold is not None and thresholds is not None:
        fail("give --threshold or --thresholds, not both")
    limits = read_thresholds(thresholds) if thresholds else threshold
    files, unlisted = collect_paths(paths)
    if not files:
        fail("no audio files found in the given paths")
    run, selection = start_run(output=output, fmt=fmt, files=files, unlisted_folders=unlisted,
                               quiet=quiet, name=lambda: card_name(model, weights),
                               resume=resume, retry_failed=retry_failed, shard=shard,
                               write_tags=write_tags, tag_field=tag_field, id3v23=id3v23,
                               dry_run=dry_run)
    files = selection.todo
    load = {"device": device, "batch_size": batch_size, "backend": backend,
            "precision": precision, "threads": threads}
    # With ray the actors load the model; here its card is only read (a wrong name exits 2).
    tagger = None if chosen.is_ray else open_tagger(model, weights, **load)
    card = tagger.card if tagger else open_card(model, weights)
    if isinstance(limits, dict):
        check_tags(limits, card.labels, thresholds)
    if tagger is None:
        chosen.connect(verbose=verbose)
        outcomes = engines.checked(tag_outcomes(files, model=model, weights=weights,
                                                top_k=top_k, thresholds=limits,
                                                all_scores=all_scores, **chosen.options(),
                                                **load))
    else:
        outcomes = tag_records(tagger, files, top_k=top_k, thresholds=limits,
                               all_scores=all_scores)
    if output is None:
        sys.stdout.reconfigure(errors=PATH_ERRORS)
    try:
        with contextlib.ExitStack() as stack:
            try:
                stream = stack.enter_context(run.open_output()) if output else sys.stdout
            except MusictagError as error:
                fail_run(error, output=output)
            failed = write_outcomes(outcomes, len(files), stream, fmt=fmt, quiet=quiet, run=run)
    except OSError as error:  # results cannot be written: a full disk, a closed pipe
        fail(f"{output or 'stdout'}: cannot write the results ({error.strerror or error})")
    if failed or selection.failed_earlier or unlisted:
        raise typer.Exit(EXIT_SOME_FAILED)


def write_outcomes(outcomes: Iterable[tuple[str | os.PathLike, dict | AudioError]], total: int,
                   stream: IO[str], *, fmt: str, quiet: bool,
                   run: LibraryRun | None = None) -> int:
    """Write each file's record as it finishes; returns how many files failed.

    ``outcomes`` is an engine's ``(path, record or AudioError)`` per file (the local
    :func:`~musictag.output.tag_records`, or :func:`musictag.scale.tag_outcomes`), so that either
    engine's results are written, logged and counted by this one loop. ``run`` writes tags into
    the files (under its ``dry_run``, the changes are printed instead) and keeps the results log.
    """
    failed = 0
    table_records: list[dict] = []
    writer = None if fmt == "table" else RecordWriter(stream, fmt)
    progress = progress_bar(quiet)
    with progress:
        task = progress.add_task("tagging", total=total)
        for path, record in outcomes:
            progress.update(task, description=Path(path).name[:40])
            try:
                if isinstance(record, AudioError):
                    raise record
                change = run.tagged(path, record) if run else None  # AudioError: not written
                if change is not None and run.dry_run:
                    stderr.print(change.describe(), markup=False, highlight=False,
                                 soft_wrap=True)
            except AudioError as error:
                failed += 1
                if run:
                    run.failed(path, error)
                progress.console.print(f"musictag: {error}", markup=False, highlight=False,
                                       soft_wrap=True)
            else:
                if writer:
                    writer.write(record)
                else:
                    table_records.append(record)
            progress.advance(task)
    if writer:
        writer.close()
    else:
        Console(file=stream).print(render_table(table_records))
    return failed
