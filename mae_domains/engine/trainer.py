"""The pretraining loop: plain PyTorch, AdamW, warmup + cosine, accumulation, clipping, mixed
precision, DDP, atomic full-state checkpoints and exact resume.

Nothing of a run is written before it is known good: the run folder is checked and locked, the
checkpoint (on resume) is loaded and checked against the config, the model is built and the loader set
up; only then are ``config.yaml``, ``stats.json`` and the CSV logs written."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from mae_domains import __version__
from mae_domains.config import RunConfig, dump_config
from mae_domains.data.loaders import pretraining_loader, sample_signatures
from mae_domains.data.sample import NormStats
from mae_domains.data.sampler import batches_per_epoch, check_groups
from mae_domains.device import autocast, select_device, select_precision
from mae_domains.engine.activation_checkpointing import enable_activation_checkpointing
from mae_domains.engine.checkpoint import capture_rng, load_resume_state, restore_rng, save_atomic
from mae_domains.engine.compilation import compile_model
from mae_domains.engine.disk import check_free_space, disk_full, free_bytes, is_disk_full, needed_bytes, state_nbytes
from mae_domains.engine.distributed import (
    DistInfo, all_gather_objects, all_reduce_sum, cleanup, gather_full_state, gradient_sync, init_distributed,
    load_full_state, run_on_main, shard_model, total_grad_norm,
)
from mae_domains.engine.errors import TrainingStopped
from mae_domains.engine.health import HEALTH_FIELDS, TrainingHealth
from mae_domains.engine.online_knn import OnlineKnn, isolated_rng
from mae_domains.engine.preemption import StopRequest
from mae_domains.engine.reporting import StartupSummary, figure_interval, log_line, should_draw, should_log
from mae_domains.progress import ProgressClock
from mae_domains.engine.run_files import METRIC_FIELDS, SKIP_FIELDS, CsvLog
from mae_domains.engine.skips import SkipTracker
from mae_domains.host_memory import retain_freed_host_memory
from mae_domains.models.attention import prefer_matmul_attention
from mae_domains.models.presets import with_preset_decoder
from mae_domains.optim import build_optimizer, effective_lr, resolve_schedule
from mae_domains.runs.folder import clear_previous_run, existing_run_files, open_run_folder, write_atomic
from mae_domains.runs.input_contract import record_input_channels
from mae_domains.runs.layout import CHECKPOINT_NAME, CONFIG_NAME, FIGURES_DIR, METRICS_NAME, SKIPPED_NAME, STATS_NAME
from mae_domains.runs.lock import RunLock
from mae_domains.runs.model import describe_load_error
from mae_domains.runs.resume import check_resume_config
from mae_domains.shards import open_archive, shard_groups
from mae_domains.weights import CheckpointFormatError

log = logging.getLogger("mae_domains.engine")

__all__ = ["PretrainResult", "Trainer", "TrainingStopped", "configure_threads", "pretrain"]


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    checkpoint: Path
    skipped: int = 0  # distinct samples skipped over the whole run
    stopped_by: str | None = None  # a signal's name when the run stopped early on it
    checkpoint_step: int | None = None  # the step of the checkpoint on disk (None: none was written)
    total_steps: int | None = None


@dataclass
class TrainStep:
    """One optimizer step as :meth:`Trainer.after_step` reports it: the loss (mean over ranks and
    micro-batches), the lr, the gradient norm before clipping, the last micro-batch's model output, whether
    any rank asked to stop, and the seconds spent waiting for data and on the whole step."""

    loss: float
    lr: float
    grad_norm: torch.Tensor
    output: Any
    stop_requested: bool
    data_time: float = 0.0
    step_time: float = 0.0


def configure_threads(config: RunConfig) -> int:
    """``engine.threads`` if set; else this process's share of the cores (``torchrun`` starts
    ``LOCAL_WORLD_SIZE`` of them per machine), at least 1. Loader workers are not counted: they wait on
    files most of the time, and a thread count that followed them would change the float summation
    order, hence the weights, with ``data.num_workers``."""
    if config.engine.threads:
        threads = config.engine.threads
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local_procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        threads = max(1, cores // local_procs)
    torch.set_num_threads(threads)
    return threads


def query_lr_factor(model: Any, config: RunConfig) -> float:
    """CrossMAE's lr factor ``kept_mask_ratio / mask_ratio`` (``model.query`` / mask ratio) when a fraction of
    the tokens is decoded, the lr comes from ``optim.base_lr`` and ``optim.query_lr_scale`` is on; else 1.
    Logged when it applies."""
    factor_of = getattr(model, "query_lr_factor", None)
    if factor_of is None or not config.optim.query_lr_scale or config.optim.lr is not None:
        return 1.0
    factor = float(factor_of())
    if factor != 1.0:
        log.info("lr x %.4g: model.query %s / mask ratio %s, as CrossMAE scales by kept_mask_ratio / mask_ratio "
                 "(optim.query_lr_scale=false turns this off)", factor, config.model.query, model.mask_ratio)
    return factor


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def loss_denominator(output: Any) -> torch.Tensor:
    """What the loss was averaged over (masked patches, or summed weights) on this rank."""
    den = getattr(output, "loss_denominator", None)
    if den is None:
        den = output.mask.float().sum().clamp_min(1.0)
    return den.detach().float()


def source_of(ref: Any) -> str:
    """The file of a sample reference (a path, or a chip/frame reference with a ``source``)."""
    return str(getattr(ref, "source", ref))


class Trainer:
    def __init__(self, config: RunConfig, run_dir: Path, resume: bool = False, adapter=None,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None, overwrite: bool = False) -> None:
        from mae_domains.registry import get_adapter

        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.overwrite = overwrite and not resume
        self.on_step = on_step
        self.dist: DistInfo = init_distributed(config.engine.device)
        self.device = select_device(config.engine.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = select_precision(self.device, config.engine.precision, cpu_bf16=True)
        self.adapter = (adapter or get_adapter(config.adapter, config.data.options)).bind(config)
        self.lock: RunLock | None = None
        self.stop = StopRequest()
        self.stopped_by: str | None = None
        self.last_checkpoint_step: int | None = None
        self.tb = None
        self.clock: ProgressClock | None = None
        self.progress = None
        self._bookkeeping_failed: set[str] = set()

    # ----- setup -----------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.config
        self.threads = configure_threads(cfg)
        if cfg.engine.retain_host_memory:
            retain_freed_host_memory()  # a step reuses the last step's buffers instead of faulting in new pages
        self.replacing = self.overwrite and bool(existing_run_files(self.run_dir))
        self.lock = run_on_main(lambda: open_run_folder(self.run_dir, self.resume, self.overwrite), self.dist)
        state = load_resume_state(self.run_dir) if self.resume else None
        if state is not None:
            check_resume_config(state["config"], cfg, self.run_dir / CHECKPOINT_NAME)
        # the adapter and its files, or prepared shards (a folder or URL) read in the adapter's place
        self.reader, self.refs = open_archive(self.adapter, cfg.data.sources)
        self.excluded = list(getattr(self.adapter, "excluded", []))  # files discovery left out: in skipped.csv
        if state is not None:
            self.stats = NormStats.from_dict(state["stats"])
        else:
            self.stats = self.reader.compute_stats(self.refs, cfg.data.stats_samples, cfg.engine.seed)
        torch.manual_seed(cfg.engine.seed)
        self.model = self.adapter.build_model(cfg.model, cfg.mask).to(self.device)
        cfg.model = with_preset_decoder(cfg.model)  # config.yaml records the decoder the preset gave
        record_input_channels(cfg, self.adapter, self.model)
        self.init_report = None
        if state is None and cfg.model.init:  # a new run from published or earlier weights
            from mae_domains.runs.initial_weights import load_initial_weights

            self.init_report = load_initial_weights(self.model, cfg.model.init, self.adapter, cfg)
        if cfg.engine.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        if self.device.type == "cpu" and self.precision.dtype is not None:
            prefer_matmul_attention(self.model)  # CPU bf16: faster than the flash kernel (models/attention.py)
        if cfg.engine.compile:
            compile_model(self.model)
        self.sharded = self.dist.enabled and cfg.engine.distributed == "fsdp"
        if self.sharded:  # before the optimizer, which must hold the sharded parameters
            shard_model(self.model, self.dist, self.device)
        world_batch = cfg.engine.batch_size * self.dist.world_size * cfg.optim.accum_steps
        self.peak_lr = effective_lr(cfg.optim.base_lr, cfg.optim.lr, world_batch)
        self.query_lr_factor = query_lr_factor(self.model, cfg)
        self.peak_lr *= self.query_lr_factor
        self.optimizer = build_optimizer(self.model, self.peak_lr, cfg.optim.weight_decay, tuple(cfg.optim.betas))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_grad_scaler)
        self.step = 0
        self.skips = SkipTracker([source_of(ref) for ref in self.refs], cfg.data.max_bad_fraction, state)
        if state is not None:
            self.restore(state)
        # Samples that make different token grids (channel counts, band subsets) never share a batch.
        signatures = sample_signatures(self.reader, self.refs)
        global_batch = cfg.engine.batch_size * self.dist.world_size
        groups = shard_groups(self.refs, cfg.data.shard_groups)  # None: one group, the raw archive's order
        if groups is not None:
            check_groups(cfg.data.shard_groups, global_batch, self.dist.world_size, signatures)
        steps_per_epoch = batches_per_epoch(len(self.refs), global_batch, signatures, groups)
        if steps_per_epoch == 0:
            raise ValueError(f"the archive holds {len(self.refs)} samples, fewer than one global batch "
                             f"({cfg.engine.batch_size} x {self.dist.world_size})"
                             f"{' of one grid signature' if signatures else ''}; lower engine.batch_size")
        o = cfg.optim  # the schedule in optimizer steps, warmup given in epochs or steps
        self.schedule = resolve_schedule(self.peak_lr, steps_per_epoch, o.accum_steps, cfg.engine.epochs,
                                         cfg.engine.max_steps, o.warmup_epochs, o.warmup_steps, o.min_lr)
        self.total_steps = self.schedule.total_steps
        self.steps_per_epoch = steps_per_epoch
        self.figure_every = figure_interval(cfg.engine.figure_every, self.total_steps)
        accum = cfg.optim.accum_steps
        self.loader = pretraining_loader(
            self.reader, self.refs, self.stats, batch_size=cfg.engine.batch_size, seed=cfg.engine.seed,
            rank=self.dist.rank, world_size=self.dist.world_size, start_step=self.step * accum,
            max_steps=self.total_steps * accum, signatures=signatures, num_workers=cfg.data.num_workers,
            pin_memory=cfg.data.pin_memory and self.device.type == "cuda", groups=groups)
        with isolated_rng(self.device):  # the labelled set of engine.online_knn (None when off)
            self.online_knn = OnlineKnn.from_config(cfg.engine.online_knn, self.adapter, self.stats)
        self.ddp_model = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                                  find_unused_parameters=bool(getattr(self.model, "has_unused_parameters", False)))
                          if self.dist.enabled and not self.sharded else self.model)
        # The run is known good: room for a checkpoint, then its files.
        run_on_main(self.start_run_files, self.dist)
        if self.dist.is_main:
            for line in self.summary().lines():
                log.info(line)
            log.info(self.schedule.describe())
            if self.schedule.warmup_steps >= self.total_steps:
                log.warning("the warmup (%d steps) is not shorter than the run (%d steps): the lr never reaches "
                            "its peak", self.schedule.warmup_steps, self.total_steps)

    def restore(self, state: dict[str, Any]) -> None:
        """Model, optimizer, scaler, step, skipped samples and RNG from a checkpoint that fits the config."""
        path = self.run_dir / CHECKPOINT_NAME
        try:
            if self.sharded:
                load_full_state(self.model, self.optimizer, state["model"], state["optimizer"])
            else:
                self.model.load_state_dict(state["model"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointFormatError(f"{path}: the checkpoint does not fit the model of the run's config "
                                        f"({describe_load_error(err)})") from None
        try:
            if not self.sharded:  # a sharded optimizer was loaded with the model
                self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, RuntimeError) as err:
            raise CheckpointFormatError(f"{path}: the optimizer state does not fit the model ({err})") from None
        self.step = self.last_checkpoint_step = int(state["step"])
        restore_rng(state["rng"])

    def expected_checkpoint_bytes(self) -> int:
        """A checkpoint's size: the model with two AdamW moments per weight, or the last one written."""
        estimate = needed_bytes(3 * state_nbytes(self.model.state_dict()))
        path = self.run_dir / CHECKPOINT_NAME
        return max(estimate, path.stat().st_size if path.is_file() else 0)

    def start_run_files(self) -> None:
        """Check for room, then write config.yaml and stats.json and open the CSV logs (rank 0)."""
        check_free_space(self.run_dir, self.expected_checkpoint_bytes(), "a checkpoint", self.kept_note())
        try:
            if self.overwrite:
                clear_previous_run(self.run_dir)
            write_atomic(self.run_dir / CONFIG_NAME,
                         lambda p: dump_config(self.config, p, [f"resolved {self.schedule.describe()}"]))
            stats = json.dumps(self.stats.as_dict(), indent=2)
            write_atomic(self.run_dir / STATS_NAME, lambda p: p.write_text(stats))
            if self.init_report is not None:  # what the initial weights mapped, adapted and left fresh
                report = json.dumps(self.init_report.as_dict(), indent=2)
                write_atomic(self.run_dir / "init_report.json", lambda p: p.write_text(report))
            truncate = self.step if self.resume else None
            self.metrics_log = CsvLog(self.run_dir / METRICS_NAME, METRIC_FIELDS, truncate)
            self.skip_log = CsvLog(self.run_dir / SKIPPED_NAME, SKIP_FIELDS, truncate)
            if not self.resume:  # a resumed run keeps the step-0 rows of its start
                for source, reason in self.excluded:
                    self.skip_log.write({"step": 0, "rank": 0, "source": source, "reason": reason})
        except OSError as err:
            if is_disk_full(err):
                raise disk_full(self.run_dir, "the run files", None, self.kept_note()) from None
            raise
        if self.config.engine.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                log.warning("engine.tensorboard is on but the tensorboard package is not installed, so this run "
                            "logs to metrics.csv only; install it with: pip install 'mae-domains[tensorboard]'")

    def summary(self) -> StartupSummary:
        cfg = self.config
        mode = f"resumed at step {self.step}" if self.resume else ("new run, replacing the previous one"
                                                                    if self.replacing else "new run")
        params = list(self.model.parameters())
        files = {f for ref in self.refs for f in self.adapter.sample_files(ref)}
        scenes = {self.adapter.sample_scene(ref) for ref in self.refs} - {None}
        return StartupSummary(
            self.run_dir, mode, self.adapter.name, len(files), len(self.refs), len(self.skips.samples),
            str(self.device), self.precision.describe(), self.threads, cfg.data.num_workers,
            sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad),
            self.step, self.total_steps, self.steps_per_epoch, cfg.engine.batch_size * self.dist.world_size,
            cfg.engine.checkpoint_every, cfg.engine.log_every, self.figure_every, len(scenes), len(self.excluded))

    # ----- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        path = self.run_dir / CHECKPOINT_NAME
        # FSDP2: every rank takes part in gathering the full state; rank 0 writes it
        full = gather_full_state(self.model, self.optimizer) if self.sharded else None
        run_on_main(lambda: self.write_checkpoint(path, full), self.dist)
        self.last_checkpoint_step = self.step
        return path

    def write_checkpoint(self, path: Path, full: tuple[dict, dict] | None = None) -> None:
        """Check for room, then write atomically; a full disk ends the run naming the intact checkpoint.
        ``full``: the gathered (model, optimizer) state of a sharded model."""
        model_state, optimizer_state = full or (unwrap(self.ddp_model).state_dict(), self.optimizer.state_dict())
        state = {
            "model": model_state, "optimizer": optimizer_state,
            "scaler": self.scaler.state_dict(), "step": self.step, "rng": capture_rng(),
            "stats": self.stats.as_dict(), **self.skips.state(),
            "config": self.config.to_dict(), "adapter": self.adapter.name, "version": __version__,
        }
        needed = needed_bytes(state_nbytes(state))
        what = f"the checkpoint of step {self.step}"
        check_free_space(self.run_dir, needed, what, self.kept_note())
        try:
            save_atomic(state, path)
        except (OSError, RuntimeError) as err:
            if is_disk_full(err) or free_bytes(self.run_dir) < needed:
                raise disk_full(self.run_dir, what, needed, self.kept_note()) from None
            raise

    def checkpoint_note(self, kept: str = "kept") -> str:
        """Where the last good checkpoint is, for the messages of a stopped run."""
        if self.last_checkpoint_step is None:
            return f"no checkpoint was written yet (engine.checkpoint_every={self.config.engine.checkpoint_every})"
        return (f"the last good checkpoint (step {self.last_checkpoint_step}) is {kept} in "
                f"{self.run_dir / CHECKPOINT_NAME}")

    def kept_note(self) -> str:
        """The note of a disk-full message."""
        return self.checkpoint_note("intact")

    # ----- bookkeeping -----------------------------------------------------------------------
    def bookkeep(self, what: str, step: int, write: Callable[[], Any]) -> None:
        """Write a log row, a figure or a TensorBoard scalar; a failure is logged (once per kind), never fatal."""
        try:
            write()
        except Exception as err:  # bookkeeping must never stop a run
            if what not in self._bookkeeping_failed:
                self._bookkeeping_failed.add(what)
                log.warning("could not write %s at step %d (%s: %s); the run goes on", what, step,
                            type(err).__name__, err)

    def record_skips(self, batch: dict[str, Any]) -> None:
        """Log every rank's skipped draws to skipped.csv, then stop if an item found no good draw or more
        than ``data.max_bad_fraction`` of the samples are bad (every rank decides alike)."""
        gathered = all_gather_objects((batch.get("skipped", []), batch.get("exhausted", [])), self.dist)
        exhausted = []
        for rank, (entries, rank_exhausted) in enumerate(gathered):
            self.skips.add(entries)
            exhausted.extend(rank_exhausted)
            if self.dist.is_main:
                for entry in entries:
                    row = {"step": self.step + 1, "rank": rank, "source": entry[0], "reason": entry[1]}
                    self.bookkeep(SKIPPED_NAME, self.step + 1, lambda row=row: self.skip_log.write(row))
        self.skips.check(self.run_dir / SKIPPED_NAME, self.checkpoint_note(), exhausted)

    def set_lr(self) -> float:
        lr = self.schedule.lr(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def report(self, row: dict[str, Any], last_loss: float, lr: float, data_time: float, step_time: float,
               batch: dict[str, Any], output: Any) -> None:
        """metrics.csv row and log line, TensorBoard scalars and the reconstruction figure (rank 0)."""
        if should_log(self.step, self.total_steps, self.config.engine.log_every) or row.get("knn_top1"):
            self.bookkeep(METRICS_NAME, self.step, lambda: self.metrics_log.write(row))
            log.info(log_line(row, self.total_steps, self.clock))
        if self.tb is not None:
            self.bookkeep("tensorboard", self.step, lambda: (self.tb.add_scalar("loss", last_loss, self.step),
                                                  self.tb.add_scalar("lr", lr, self.step)))
            for key in HEALTH_FIELDS:  # present on log rows only
                if row.get(key) not in (None, ""):
                    self.bookkeep("tensorboard", self.step, lambda key=key: self.tb.add_scalar(key, float(row[key]), self.step))
        if should_draw(self.step, self.total_steps, self.figure_every):
            figure = self.run_dir / FIGURES_DIR / f"step{self.step:07d}.png"
            model = unwrap(self.ddp_model)
            self.bookkeep("figure", self.step, lambda: self.adapter.render_reconstruction(model, batch, output, figure))

    # ----- the loop ----------------------------------------------------------------------------
    def train(self) -> PretrainResult:
        with self.stop:
            self.prepare()
            if self.stop.requested:  # a signal during set-up: a step-0 checkpoint, so --resume continues
                self.stopped_by = self.stop.signal
                if self.last_checkpoint_step is None:
                    self.save_checkpoint()
                log.warning("stopped by %s before step %d; checkpoint of step %d in %s", self.stopped_by,
                            self.step + 1, self.step, self.run_dir / CHECKPOINT_NAME)
                return self.result(math.nan)
            try:
                return self.loop()
            except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of the step under way
                self.stopped_by = "a second Ctrl-C"
                return self.result(math.nan)

    def result(self, last_loss: float) -> PretrainResult:
        return PretrainResult(self.run_dir, self.step, last_loss, self.run_dir / CHECKPOINT_NAME,
                              len(self.skips.samples), self.stopped_by, self.last_checkpoint_step,
                              getattr(self, "total_steps", None))

    def loop(self) -> PretrainResult:
        """Micro-batches into optimizer steps (:meth:`train_step`), each followed by its bookkeeping
        (:meth:`after_step`), until the last step or a stop signal."""
        accum = self.config.optim.accum_steps
        self.progress = None
        self.clock = ProgressClock(self.total_steps, self.step)
        redirect = contextlib.ExitStack()
        if self.dist.is_main and sys.stderr.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.progress = tqdm(total=self.total_steps, initial=self.step, desc="pretrain", dynamic_ncols=True)
            redirect.enter_context(logging_redirect_tqdm())  # log lines above the bar, never through it
        self.ddp_model.train()
        self.health = TrainingHealth(self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        micro = 0
        data_start = step_start = time.perf_counter()
        data_time = 0.0
        last_loss = math.nan
        try:
            for batch in self.loader:
                data_time += time.perf_counter() - data_start
                micro += 1
                step = self.train_step(batch, sync=micro % accum == 0)
                if step is None:  # gradients accumulate over the next micro-batch
                    data_start = time.perf_counter()
                    continue
                last_loss = step.loss
                step.data_time, step.step_time = data_time, time.perf_counter() - step_start
                if self.after_step(batch, step):
                    break
                data_time = 0.0
                data_start = step_start = time.perf_counter()
        finally:
            redirect.close()
            if self.progress is not None:
                self.progress.close()
            if self.tb is not None:
                self.tb.close()
        return self.result(last_loss)

    def train_step(self, batch: dict[str, Any], sync: bool) -> "TrainStep | None":
        """Forward and backward of one micro-batch (skipped draws logged first). On the last micro-batch of
        an optimizer step (``sync``) the gradients are unscaled, checked, clipped and applied, and the step
        is returned; None while gradients accumulate. Non-finite loss or gradients stop the run before
        the weights change."""
        self.record_skips(batch)
        lr = self.set_lr()
        accum = self.config.optim.accum_steps
        with gradient_sync(self.ddp_model, sync):
            with autocast(self.device, self.precision):
                output = self.ddp_model(**self.adapter.model_inputs(batch, self.device))
            den = loss_denominator(output)
            global_den = all_reduce_sum(den, self.dist)
            # gradient of the global mean: DDP averages over ranks, so scale by world / global_den
            loss = output.loss.float() * den * self.dist.world_size / global_den / accum
            self.scaler.scale(loss).backward()
        self.health.add_micro_batch(output)
        # this rank's share of the global mean: summed over ranks (below) it is the loss over all masked
        # patches, weighted by denominator as the gradient is
        self.loss_sum += loss.detach() / self.dist.world_size
        if not sync:
            return None
        # Without a GradScaler an inf/NaN gradient would reach the weights (and the next checkpoint) even
        # when the loss is finite, so it stops the run too; with fp16 the scaler skips such steps itself.
        # The flags (and a stop signal) are all-reduced so every rank decides alike.
        check_grads = not self.precision.use_grad_scaler
        self.scaler.unscale_(self.optimizer)  # true gradients to clip, check and log (step reuses them)
        grad_norm = total_grad_norm(self.model.parameters())
        grads_ok = torch.isfinite(grad_norm).to(self.device) if check_grads else torch.isfinite(self.loss_sum)
        flags = torch.stack([torch.isfinite(self.loss_sum), grads_ok,
                             torch.tensor(self.stop.requested, device=self.device)])
        loss_ok, grad_ok, stop_votes = all_reduce_sum(flags.float(), self.dist).tolist()
        if min(loss_ok, grad_ok) < self.dist.world_size:
            what = "loss" if loss_ok < self.dist.world_size else "gradients (with a finite loss)"
            raise TrainingStopped(
                f"non-finite {what} at step {self.step + 1}; stopped before the weights were updated; "
                f"{self.checkpoint_note()}. Lower optim.base_lr, set optim.clip_grad or check the data")
        if self.config.optim.clip_grad:
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), self.config.optim.clip_grad, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        step_loss = all_reduce_sum(self.loss_sum, self.dist).item()
        self.loss_sum.zero_()
        return TrainStep(step_loss, lr, grad_norm, output, stop_votes > 0)

    def after_step(self, batch: dict[str, Any], step: "TrainStep") -> bool:
        """What follows an optimizer step: its metrics row (health statistics and online kNN when due),
        the report (rank 0), the checkpoint when due and the ``on_step`` callback. True when the run ends
        here (its last step, or a stop signal on any rank)."""
        cfg = self.config
        accum = cfg.optim.accum_steps
        row = {"step": self.step, "epoch": round(self.step * accum / self.steps_per_epoch, 4),
               "loss": f"{step.loss:.6f}", "lr": f"{step.lr:.6e}", "data_time": f"{step.data_time:.4f}",
               "step_time": f"{step.step_time:.4f}",
               "samples_per_s": f"{cfg.engine.batch_size * accum * self.dist.world_size / max(step.step_time, 1e-9):.2f}"}
        self.health.end_step(step.grad_norm, step.data_time, step.step_time)
        knn_now = self.online_knn is not None and self.online_knn.due(self.step, self.total_steps)
        if knn_now:  # every rank embeds (a sharded model needs them all); no RNG drawn
            row["knn_top1"] = f"{self.online_knn.evaluate(self.model, self.device, self.precision):.4f}"
        if knn_now or should_log(self.step, self.total_steps, cfg.engine.log_every):  # alike on every rank
            row.update(self.health.read(lambda sums: all_reduce_sum(sums, self.dist)))
        if self.dist.is_main:
            self.report(row, step.loss, step.lr, step.data_time, step.step_time, batch, step.output)
            if self.lock is not None:
                self.lock.refresh()
            if self.progress is not None:
                self.progress.update(1)
                self.progress.set_postfix(loss=f"{step.loss:.4f}")
        if self.step % cfg.engine.checkpoint_every == 0 or self.step == self.total_steps or step.stop_requested:
            self.save_checkpoint()
        if self.on_step is not None:
            self.on_step(self.step, row)
        if self.step >= self.total_steps:
            return True
        if step.stop_requested:
            self.stopped_by = self.stop.signal or "a stop signal on another rank"
            log.warning("stopped by %s after step %d; checkpoint written to %s", self.stopped_by,
                        self.step, self.run_dir / CHECKPOINT_NAME)
            return True
        return False

    def close(self) -> None:
        """Release the run folder's lock."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def pretrain(config: RunConfig, run_dir: str | Path, resume: bool = False, adapter=None,
             on_step: Callable[[int, dict[str, Any]], None] | None = None, overwrite: bool = False) -> PretrainResult:
    """Run (or resume) a pretraining job; returns where its files are. A new run refuses a folder that
    holds a run unless ``overwrite``; the folder is locked while the run lasts."""
    trainer = Trainer(config, Path(run_dir), resume=resume, adapter=adapter, on_step=on_step, overwrite=overwrite)
    try:
        return trainer.train()
    finally:
        trainer.close()
        cleanup(trainer.dist)
