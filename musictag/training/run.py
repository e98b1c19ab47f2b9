"""A training run: a folder that holds everything needed to continue it, and its result.

A :class:`~musictag.runfolder.RunFolder`: ``RUN/config.json`` (fixed when the run starts),
``RUN/checkpoint.pt`` (written after every epoch, every ``checkpoint_every_steps`` steps and on
Ctrl-C or SIGTERM), ``RUN/log.csv`` and ``RUN/log.jsonl`` (one row per epoch, rewritten from the
checkpoint's history; the JSON lines add per-tag validation ROC-AUC) and the model of the best
validation loss so far as ``RUN/NAME.json`` + ``RUN/NAME.safetensors``.

A run resumed after ``kill -9`` ends with the weights an uninterrupted run would have: an epoch's
segments are planned from (seed, epoch) and every step reseeds dropout from (seed, epoch, batch,
rank), so nothing random depends on what happened before the checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import stop_signals
from ..data import open_dataset
from ..data.cache import AudioCache, default_cache_dir
from ..device import autocast, autocast_dtype
from ..errors import RunError
from ..evaluate import score_windows
from ..inference import Tagger
from ..metrics import tagging_metrics
from ..nets import use_bf16_form
from ..registry import ModelCard
from ..runfolder import RunFolder
from . import distributed
from .batches import SegmentLoader, batch_bounds, epoch_plan, shard
from .config import TrainConfig, merged
from .model import build, resolve_spec, set_input_statistics, trained_card
from .schedule import PlateauSchedule

log = logging.getLogger(__name__)

#: Called (on the main process only) with an event name and its numbers: "decode", "start",
#: "epoch_start", "batch", "validate", "epoch".
EventCallback = Callable[[str, dict[str, Any]], None]

LOG_COLUMNS = ("epoch", "step", "loss", "val_loss", "val_roc_auc", "val_pr_auc", "lr", "seconds",
               "outcome")
#: Keeps log(0) out of the validation loss computed from sigmoid outputs.
PROBABILITY_EPS = 1e-7


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run after saving its checkpoint."""


class _StopRequested(Exception):
    pass


def open_config(run_dir: str | Path, settings: dict[str, Any], *, resume: bool,
                write: bool = True) -> TrainConfig:
    """The run's configuration: ``settings`` over the defaults for a new run (checked before it
    is stored), the stored one for ``resume`` (which ``settings`` may repeat but not change).
    Resuming a folder that holds no run yet starts it, so one command line both starts and
    continues a run that a cluster scheduler may requeue."""

    def given(base: TrainConfig | None) -> TrainConfig:
        config = merged(base or TrainConfig(), settings)
        if base is None:
            config.validate()
        return config

    return RunFolder(run_dir).open_config(TrainConfig.from_dict, given, resume=resume,
                                          write=write)


class _ModuleBackend:
    """The model being trained, behind the interface :class:`Tagger` scores windows with."""

    name = "training"

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None):
        self.model, self.device, self.dtype = model, device, dtype

    @torch.no_grad()
    def predict(self, windows: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        with autocast(self.device, self.dtype):
            return torch.sigmoid(self.model(batch).float()).cpu().numpy()


def step_seed(*parts: int) -> int:
    """A seed drawn from ``parts`` (seed, epoch, batch, rank): a step's randomness depends on
    where it is in the run, never on what ran before it."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class TrainingRun:
    def __init__(self, run_dir: str | Path, settings: dict[str, Any], *, resume: bool = False,
                 on_event: EventCallback | None = None):
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.on_event = on_event
        is_main = distributed.environment_rank() == 0
        self.config = open_config(self.run_dir, settings, resume=resume, write=is_main)
        self.dist = distributed.start(self.config.device)
        self.epoch = self.batch = self.step = 0
        self.loss_sum, self.loss_count = 0.0, 0
        self.elapsed_s = self.epoch_s = 0.0
        self.finished = False
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    def _emit(self, name: str, values: dict[str, Any]) -> None:
        if self.on_event and self.dist.is_main:
            self.on_event(name, values)

    # --- setting up -------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        config, dist = self.config, self.dist
        dataset = open_dataset(config.dataset, config.data_dir, labels=config.labels or None,
                               n_tags=config.n_tags)
        self.spec = resolve_spec(config, len(dataset.tags))
        self.cache = AudioCache.per_rate(config.cache_dir or default_cache_dir(config.data_dir),
                                         dataset.audio_root,
                                         sample_rate_hz=self.spec.sample_rate_hz)
        needed = [clip.path for split in ("train", "valid") for clip in dataset.clips(split)]
        self.cache.decode(needed[dist.rank::dist.world_size], workers=config.workers,
                          on_progress=lambda done, total: self._emit(
                              "decode", {"done": done, "total": total}))
        dist.barrier()
        lengths = self.cache.lengths(needed)
        self.dataset = dataset.keep_decoded(lengths, self.spec.sample_rate_hz)
        self.train_clips = self.dataset.clips("train")
        self.valid_clips = self.dataset.clips("valid")
        if len(self.train_clips) < 2 or not self.valid_clips:
            raise RunError(f"{config.data_dir}: training needs clips in both the train and "
                           f"the valid split (found {len(self.train_clips)} and "
                           f"{len(self.valid_clips)})")
        self.train_lengths = np.array([lengths[c.path] for c in self.train_clips])
        self.loader = SegmentLoader(self.cache, [c.path for c in self.train_clips],
                                    self.dataset.targets(self.train_clips),
                                    self.spec.window_samples)
        self.valid_targets = self.dataset.targets(self.valid_clips)
        self.name = config.name or f"{self.spec.arch['name']}-{dataset.kind}"

    def _prepare_model(self) -> None:
        config, device = self.config, self.dist.device
        torch.manual_seed(config.seed)
        model = build(self.spec, self.dataset.tags)
        if hasattr(model, "log_mel") and self.spec.init is None:
            set_input_statistics(model, self.cache, [c.path for c in self.train_clips],
                                 self.train_lengths, window_samples=self.spec.window_samples,
                                 seed=config.seed)
        self.module = model.to(device)
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=config.lr, momentum=config.momentum,
                nesterov=config.nesterov, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                               weight_decay=config.weight_decay)
        self.schedule = PlateauSchedule(lr=config.lr, factor=config.lr_decay_factor,
                                        patience=config.patience_epochs,
                                        max_decays=config.max_lr_decays)
        self.dtype = autocast_dtype(config.precision, device)
        if self.dtype == torch.bfloat16:
            use_bf16_form(model)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self._restore()
        self.model = model
        if self.dist.active:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)

    # --- checkpoints --------------------------------------------------------------------------

    def _save(self) -> None:
        if not self.dist.is_main:
            return
        self.folder.save_checkpoint(
            model=self.module, optimizer=self.optimizer,
            scheduler=self.schedule,
            counters={"epoch": self.epoch, "batch": self.batch, "step": self.step,
                      "loss_sum": self.loss_sum, "loss_count": self.loss_count,
                      "elapsed_s": self.elapsed_s, "epoch_s": self.epoch_s,
                      "finished": self.finished},
            extra={"best": self.best_state, "scaler": self.scaler.state_dict(),
                   "history": self.history})

    def _restore(self) -> None:
        state = self.folder.load_checkpoint(model=self.module, optimizer=self.optimizer,
                                            scheduler=self.schedule)
        if state is None:
            return
        for key in ("epoch", "batch", "step", "loss_count"):
            setattr(self, key, int(state[key]))
        for key in ("loss_sum", "elapsed_s", "epoch_s"):
            setattr(self, key, float(state[key]))
        self.finished = bool(state["finished"])
        extra = state["extra"]
        self.best_state, self.history = extra["best"], list(extra["history"])
        self.scaler.load_state_dict(extra["scaler"])

    # --- training -----------------------------------------------------------------------------

    def _train_step(self, segments: np.ndarray, targets: np.ndarray, seed: int) -> float:
        torch.manual_seed(seed)
        device = self.dist.device
        inputs = torch.from_numpy(segments).to(device, non_blocking=True)
        labels = torch.from_numpy(targets).to(device, non_blocking=True)
        with autocast(device, self.dtype):
            logits = self.model(inputs)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def _train_epoch(self, epoch: int, request: dict[str, bool]) -> None:
        config, dist = self.config, self.dist
        plan = shard(epoch_plan(self.train_lengths, window_samples=self.spec.window_samples,
                                segments_per_clip=config.segments_per_clip, seed=config.seed,
                                epoch=epoch), rank=dist.rank, world_size=dist.world_size)
        bounds = batch_bounds(len(plan), config.batch_size)
        self._emit("epoch_start", {"epoch": epoch, "batches": len(bounds), "done": self.batch,
                                   "lr": self.schedule.lr})
        self.model.train()
        for index, (segments, targets) in enumerate(
                self.loader.batches(plan, bounds[self.batch:]), start=self.batch):
            tick = time.monotonic()
            loss = self._train_step(segments, targets, step_seed(config.seed, epoch, index,
                                                                 dist.rank))
            self.batch, self.step = index + 1, self.step + 1
            self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1
            spent = time.monotonic() - tick
            self.elapsed_s, self.epoch_s = self.elapsed_s + spent, self.epoch_s + spent
            self._emit("batch", {"epoch": epoch, "batch": self.batch, "batches": len(bounds),
                                 "loss": loss, "running_loss": self.loss_sum / self.loss_count})
            if request["stop"]:
                raise _StopRequested
            if config.checkpoint_every_steps and self.step % config.checkpoint_every_steps == 0:
                self._save()

    def _validate(self, request: dict[str, bool]) -> dict[str, Any]:
        """Validation loss (mean BCE over windows) and clip-level ROC/PR-AUC, the clips shared
        between processes."""
        dist, module = self.dist, self.module
        tick = time.monotonic()
        dist.broadcast_buffers(module)
        module.eval()
        card = self._card({}, {})
        tagger = Tagger(card, _ModuleBackend(module, dist.device, self.dtype),
                        batch_size=self.config.eval_batch_size)
        indices = np.arange(dist.rank, len(self.valid_clips), dist.world_size)
        total = len(self.valid_clips)

        def progress(done: int, _: int) -> None:
            if request["stop"]:
                raise _StopRequested
            self._emit("validate", {"done": min(done * dist.world_size, total), "total": total})

        windows = score_windows(tagger, self.cache, [self.valid_clips[i] for i in indices],
                                on_progress=progress)
        module.train()
        truth = self.valid_targets[indices][windows.owner]
        probabilities = np.clip(windows.scores.astype(np.float64), PROBABILITY_EPS,
                                1 - PROBABILITY_EPS)
        bce = -(truth * np.log(probabilities) + (1 - truth) * np.log1p(-probabilities)).sum()
        part = (indices, windows.clip_means(len(indices)), float(bce), int(truth.size))
        clip_scores = np.zeros_like(self.valid_targets)
        bce_total, count = 0.0, 0
        for rows, means, bce_part, size in dist.gather(part):
            clip_scores[rows] = means
            bce_total, count = bce_total + bce_part, count + size
        metrics = tagging_metrics(self.valid_targets, clip_scores, self.dataset.tags)
        self.elapsed_s += time.monotonic() - tick
        self.epoch_s += time.monotonic() - tick
        return {"val_loss": bce_total / max(count, 1), "val_roc_auc": metrics.roc_auc,
                "val_pr_auc": metrics.pr_auc,
                "per_tag_roc_auc": {s.tag: s.roc_auc for s in metrics.per_tag}}

    def _end_epoch(self, epoch: int, validation: dict[str, Any]) -> dict[str, Any]:
        lr = self.schedule.lr
        outcome = self.schedule.step(validation["val_loss"])
        row = {"epoch": epoch, "step": self.step,
               "loss": self.dist.mean(self.loss_sum / max(self.loss_count, 1)),
               **validation, "lr": lr, "seconds": round(self.epoch_s, 1), "outcome": outcome}
        if outcome == "improved":
            self.best_state = {k: v.detach().cpu().clone()
                               for k, v in self.module.state_dict().items()}
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr
        self.history.append(row)
        self.epoch, self.batch = epoch, 0
        self.loss_sum, self.loss_count, self.epoch_s = 0.0, 0, 0.0
        self.finished = self.schedule.finished or 0 < self.config.max_epochs <= epoch
        self._save()
        if self.dist.is_main:
            self._write_logs()
            if outcome == "improved" or self.finished:
                self._export()
        return row

    def train(self) -> Path | None:
        """Train to the end of the schedule (or ``max_epochs``); the card's path on the main
        process. Raises :class:`TrainingInterrupted` after saving when asked to stop."""
        try:
            self._prepare_data()
            self._prepare_model()
            self._emit("start", {"clips": self.dataset.describe(),
                                 "tags": len(self.dataset.tags), "epoch": self.epoch,
                                 "device": str(self.dist.device),
                                 "world_size": self.dist.world_size,
                                 "precision": str(self.dtype or "fp32").replace("torch.", ""),
                                 "parameters": sum(p.numel() for p in self.module.parameters())})
            with stop_signals() as request:
                while not self.finished:
                    epoch = self.epoch + 1
                    try:
                        self._train_epoch(epoch, request)
                        validation = self._validate(request)
                    except _StopRequested:
                        self._save()
                        raise TrainingInterrupted(
                            f"stopped in epoch {epoch}; checkpoint saved in {self.run_dir}"
                        ) from None
                    self._emit("epoch", self._end_epoch(epoch, validation))
            card = self._export() if self.dist.is_main else None
            self.dist.barrier()  # no process tears the group down while rank 0 still writes
            return card
        finally:
            distributed.stop(self.dist)

    # --- results --------------------------------------------------------------------------

    def _best_row(self) -> dict[str, Any]:
        improved = [row for row in self.history if row["outcome"] == "improved"]
        return improved[-1] if improved else {}

    def _card(self, reported: dict[str, Any], provenance: dict[str, Any]) -> ModelCard:
        return trained_card(self.spec, name=self.name, labels=self.dataset.tags,
                            training_data=("MagnaTagATune" if self.dataset.kind == "mtat" else
                                           f"labelled folder {Path(self.config.data_dir).name}"),
                            reported=reported, provenance=provenance)

    def _export(self) -> Path:
        best = self._best_row()
        card = self._card(
            {"valid_roc_auc": best.get("val_roc_auc"), "valid_pr_auc": best.get("val_pr_auc"),
             "valid_loss": best.get("val_loss")},
            {"best_epoch": best.get("epoch"), "epochs": self.epoch, "steps": self.step,
             "training_time_s": round(self.elapsed_s), "world_size": self.dist.world_size,
             "clips": self.dataset.describe(),
             "init": self.spec.init.name if self.spec.init else None,
             "config": self.config.to_dict()})
        return self.folder.export(card, self.best_state or self.module.state_dict())

    def _write_logs(self) -> None:
        self.folder.write_rows(
            "log.csv", ({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v)
                         for k, v in row.items()} for row in self.history), LOG_COLUMNS)
        self.folder.write_rows("log.jsonl", self.history)
