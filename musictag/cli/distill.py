"""``musictag distill``: train a SampleCNN student from teacher taggers on unlabelled audio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import MusictagError, first_line
from ..registry import DEFAULT_MODEL, card_reference, get_card
from .app import (
    USER_ERRORS,
    QuietOption,
    VerboseOption,
    app,
    fail,
    fail_error,
    progress_bar,
    setup_logging,
    stderr,
)


def _auc_text(auc: float | None) -> str:
    """A macro ROC-AUC is undefined when no tag has both positive and negative tracks."""
    return "undefined" if auc is None else f"{auc:.4f}"


def _with_interval(value: float | None, bounds: list[float] | None, digits: int) -> str:
    """A figure on a few dozen tracks is printed with the interval that says how far it holds."""
    if value is None:
        return "undefined"
    text = f"{value:.{digits}f}"
    return f"{text} (95% {bounds[0]:.{digits}f} to {bounds[1]:.{digits}f})" if bounds else text


def _fit_summary(values: dict[str, Any]) -> str:
    """The training-track agreement, printed beside the held-out one it is compared with."""
    fit = values.get("training_tracks")
    if not fit:
        return ""
    return f"; training tracks {_auc_text(fit['macro_roc_auc'])}, {fit['mean_top5_overlap']:.2f}/5"


@app.command()
def distill(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Folder of the run (created, or "
                                                            "continued with --resume).")],
    teacher: Annotated[list[str] | None, typer.Option(
        "--teacher", help="Teacher card, optionally weighted: NAME or NAME:WEIGHT. Repeat.")
    ] = None,
    audio_dir: Annotated[Path | None, typer.Option(
        "--audio-dir", help="Unlabelled audio, searched recursively; its first folder level "
                            "names the groups.")] = None,
    hold_out: Annotated[list[str] | None, typer.Option(
        "--hold-out", help="Group (first-level folder) kept for validation. Repeat.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="Where decoded audio is cached (default RUN_DIR/cache).")] = None,
    group_weight: Annotated[list[str] | None, typer.Option(
        "--group-weight", help="GROUP:WEIGHT: draw that training group's tracks WEIGHT times "
                               "as often (default 1). Repeat.")] = None,
    student: Annotated[str, typer.Option(
        "--student", help="Card (name or .json) whose architecture, sample rate and window the "
                          "student takes; its weights are not used.")] = DEFAULT_MODEL,
    init: Annotated[str | None, typer.Option(
        "--init", help="Start the student from this card's weights (name or .json): its "
                       "architecture replaces --student's.")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Name of the student card [default: samplecnn-distilled].")] = None,
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, help="Total optimiser steps of the run (sets the LR schedule) "
                               "[default: 12000].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", "-b", min=1, help="[default: 16]")] = None,
    labels_per_step: Annotated[int | None, typer.Option(
        "--labels-per-step", min=1, help="Segments the teachers label per step; the rest of "
                                         "each batch is drawn again from the label bank "
                                         "(--batch-size: every segment new) [default: 4].")
    ] = None,
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Peak AdamW learning rate [default: 0.001].")] = None,
    warmup_steps: Annotated[int | None, typer.Option(
        "--warmup-steps", min=0, help="Steps of linear learning-rate warm-up [default: 300].")
    ] = None,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", min=1.0, help="Soften teacher and student logits by this much in the "
                                       "loss (1: plain BCE on the teachers' scores) "
                                       "[default: 1.0].")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="bf16 or fp32 [default: bf16].")] = None,
    device: Annotated[str | None, typer.Option(
        "--device", help="Where student and teachers run: cpu, cuda or auto (a CUDA GPU when "
                         "present) [default: cpu].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="[default: 0]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in RUN_DIR.")] = False,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", min=1, help="Stop this call after this many steps (resumable).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop this call after this long (resumable).")] = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Distill teacher taggers into a student model; prints the student card's path.

    Options left out take :class:`~musictag.distill.run.DistillConfig`'s defaults (the help
    repeats them; tests/test_distill.py checks that they agree)."""
    from ..distill.augment import parse_group_weight
    from ..distill.run import DistillConfig, DistillRun
    from ..distill.teachers import parse_teacher_spec
    from ..runfolder import RunFolder

    setup_logging(verbose)
    if precision is not None and precision not in ("bf16", "fp32"):
        fail(f"unknown precision {precision!r} (bf16 or fp32)")
    if resume:
        config = None
    else:
        if not teacher or audio_dir is None or not hold_out:
            fail("a new run needs --teacher, --audio-dir and --hold-out (or --resume)")
        if RunFolder(run_dir).started:
            fail(f"{run_dir} already holds a run; add --resume to continue it")
        try:
            teachers = [parse_teacher_spec(spec) for spec in teacher]
            group_weights = dict(parse_group_weight(spec) for spec in group_weight or [])
            student_card = get_card(init or student)
        except MusictagError as error:
            fail_error(error)
        given = {"name": name, "total_steps": steps, "batch_size": batch_size,
                 "labels_per_step": labels_per_step, "lr": lr, "precision": precision,
                 "device": device, "seed": seed, "warmup_steps": warmup_steps,
                 "temperature": temperature}
        config = DistillConfig(audio_dir=str(audio_dir.resolve()), teachers=teachers,
                               held_out_groups=list(hold_out),
                               group_weights=group_weights,
                               student_arch=student_card.arch,
                               sample_rate_hz=student_card.sample_rate_hz,
                               window_samples=student_card.window_samples,
                               cache_dir=str(cache_dir.resolve()) if cache_dir else "",
                               init=card_reference(init) if init else "",
                               **{key: value for key, value in given.items()
                                  if value is not None})
    progress = progress_bar(quiet, transient=False)
    tasks: dict[str, Any] = {}

    def on_event(event: str, values: dict[str, Any]) -> None:
        if event == "cache":
            if "cache" not in tasks:
                tasks["cache"] = progress.add_task("decoding corpus", total=values["total"])
            progress.update(tasks["cache"], completed=values["done"])
        elif event == "step":
            if "steps" not in tasks:
                tasks["steps"] = progress.add_task("distilling", total=run.config.total_steps)
            progress.update(tasks["steps"], completed=values["step"],
                            description=f"distilling (loss {values['loss']:.4f})")
        elif event == "validation":
            roc = _with_interval(values["macro_roc_auc"], values["macro_roc_auc_ci95"], 4)
            overlap = _with_interval(values["mean_top5_overlap"],
                                     values["mean_top5_overlap_ci95"], 2)
            progress.console.print(
                f"step {values['step']}: held-out ROC-AUC {roc}, top-5 overlap {overlap} "
                f"over {values['tracks']} tracks ({values['elapsed_s']} s trained)"
                f"{_fit_summary(values)}", highlight=False)

    try:
        run = DistillRun(run_dir, config, on_event=on_event)
        with progress:
            run.train(max_steps=max_steps,
                      max_time_s=None if max_minutes is None else max_minutes * 60)
    except USER_ERRORS as error:
        fail_error(error)
    print(run.run_dir / f"{run.config.name}.json")


@app.command("compare-teachers")
def compare_teachers(
    teacher: Annotated[list[str], typer.Option("--teacher", help="Teacher card. Repeat.")],
    audio_dir: Annotated[Path, typer.Option("--audio-dir", help="Audio, grouped by first-level "
                                                                "folder.")],
    cache_dir: Annotated[Path, typer.Option("--cache-dir", help="Decoded-audio cache folder.")],
    expect: Annotated[Path | None, typer.Option(
        "--expect", help="JSON {group: [tags the group plainly holds]} for plausibility.")] = None,
    per_group: Annotated[int, typer.Option("--per-group", min=1)] = 6,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON report "
                                                                       "here.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Measure teachers' agreement with each other and with what the audio plainly holds."""
    from ..distill.report import compare_teachers as build_report

    setup_logging(verbose)
    try:
        expected = json.loads(expect.read_text()) if expect else {}
    except (OSError, ValueError) as error:
        fail(f"{expect}: not a JSON object of group -> tags ({first_line(error)})")
    try:
        with stderr.status("") as status:
            report = build_report(teacher, audio_dir, cache_dir, expected=expected,
                                  per_group=per_group, on_status=status.update)
    except USER_ERRORS as error:
        fail_error(error)
    _print_report(report.to_dict(), output)


def _print_report(report: dict[str, Any], output: Path | None) -> None:
    """The report as JSON on stdout, and in ``output`` (written atomically) when given."""
    from ..fileio import atomic_open

    text = json.dumps(report, indent=2)
    if output:
        with atomic_open(output) as handle:
            handle.write(text + "\n")
    print(text)


@app.command("agreement")
def agreement_command(
    teacher: Annotated[list[str], typer.Option(
        "--teacher", help="Teacher card, optionally weighted: NAME or NAME:WEIGHT. Repeat.")],
    audio_dir: Annotated[Path, typer.Option(
        "--audio-dir", help="Audio to compare on, searched recursively; its first folder level "
                            "names the groups.")],
    cache_dir: Annotated[Path, typer.Option(
        "--cache-dir", help="Decoded-audio cache folder; the teachers' labels are kept there "
                            "too.")],
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Student card (name or .json). Repeat to compare: each later one "
                              "is paired against the first.")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="Only this group (first-level folder). Repeat; default all.")] = None,
    windows_per_track: Annotated[int, typer.Option(
        "--windows-per-track", min=1, help="Evenly spaced windows scored per track.")] = 8,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSON report "
                                                                       "here.")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Students' agreement with teachers on any audio, with bootstrap intervals; prints JSON."""
    from ..distill.report import student_agreement

    setup_logging(verbose)
    names = model or [DEFAULT_MODEL]
    try:
        with stderr.status("") as status:
            report = student_agreement(names, teacher, audio_dir, cache_dir, groups=group,
                                       windows_per_track=windows_per_track,
                                       on_status=status.update)
    except USER_ERRORS as error:
        fail_error(error)
    for name, result in report.models.items():
        seen = result["trained_on_evaluated_groups"]
        if seen:
            stderr.print(f"warning: {name} trained on {', '.join(seen)}: not held out for it",
                         highlight=False)
        roc = _with_interval(result["macro_roc_auc"], result["macro_roc_auc_ci95"], 4)
        overlap = _with_interval(result["mean_top5_overlap"], result["mean_top5_overlap_ci95"], 2)
        stderr.print(f"{name}: ROC-AUC {roc}, top-5 overlap {overlap} over {report.tracks} "
                     "tracks", highlight=False)
    for name, difference in report.paired_with_first.items():
        roc, overlap = difference["macro_roc_auc"], difference["mean_top5_overlap"]
        stderr.print(f"{name} minus {names[0]}: ROC-AUC "
                     f"{_with_interval(roc['difference'], roc['ci95'], 4)}, top-5 overlap "
                     f"{_with_interval(overlap['difference'], overlap['ci95'], 2)}",
                     highlight=False)
    _print_report(report.to_dict(), output)
