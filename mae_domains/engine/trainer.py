"""The pretraining loop: plain PyTorch, AdamW, warmup + cosine, accumulation, clipping, mixed
precision, DDP, atomic full-state checkpoints and exact resume."""

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
from torch.utils.data import DataLoader

from mae_domains import __version__
from mae_domains.config import RunConfig, dump_config
from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.data.sample import NormStats
from mae_domains.data.sampler import SeededBatchSampler
from mae_domains.device import autocast, select_device, select_precision
from mae_domains.engine.checkpoint import CHECKPOINT_NAME, capture_rng, load_resume_state, restore_rng, save_atomic
from mae_domains.engine.distributed import DistInfo, all_gather_objects, all_reduce_sum, cleanup, init_distributed
from mae_domains.engine.optim import build_optimizer, effective_lr, lr_at
from mae_domains.engine.run_files import METRIC_FIELDS, SKIP_FIELDS, CsvLog

log = logging.getLogger("mae_domains.engine")


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (non-finite loss, too many bad samples); the last checkpoint is kept."""


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    checkpoint: Path
    skipped: int = 0


def _worker_init(_: int) -> None:
    """Loader workers compute on one thread each (torch, and OpenCV if an adapter imported it), so
    workers plus the main process do not oversubscribe the cores."""
    torch.set_num_threads(1)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(1)


def configure_threads(config: RunConfig) -> int:
    """``engine.threads`` if set; else this process's share of the cores (``torchrun`` starts
    ``LOCAL_WORLD_SIZE`` of them per machine) minus one core per loader worker, at least 1."""
    if config.engine.threads:
        threads = config.engine.threads
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local_procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        threads = max(1, cores // local_procs - config.data.num_workers)
    torch.set_num_threads(threads)
    return threads


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def loss_denominator(output: Any) -> torch.Tensor:
    """What the loss was averaged over (masked patches, or summed weights) on this rank."""
    den = getattr(output, "loss_denominator", None)
    if den is None:
        den = output.mask.float().sum().clamp_min(1.0)
    return den.detach().float()


class Trainer:
    def __init__(self, config: RunConfig, run_dir: Path, resume: bool = False, adapter=None,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        from mae_domains.registry import get_adapter

        self.config = config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.on_step = on_step
        self.dist: DistInfo = init_distributed(config.engine.device)
        self.device = select_device(config.engine.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = select_precision(self.device, config.engine.precision)
        self.adapter = (adapter or get_adapter(config.adapter, config.data.options)).bind(config)

    # ----- setup -----------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.config
        configure_threads(cfg)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.refs = self.adapter.discover(cfg.data.sources)
        state = load_resume_state(self.run_dir) if self.resume else None
        if state is not None:
            self.stats = NormStats.from_dict(state["stats"])
        else:
            self.stats = self.adapter.compute_stats(self.refs, cfg.data.stats_samples, cfg.engine.seed)
        if self.dist.is_main:
            dump_config(cfg, self.run_dir / "config.yaml")
            (self.run_dir / "stats.json").write_text(json.dumps(self.stats.as_dict(), indent=2))
        torch.manual_seed(cfg.engine.seed)
        self.model = self.adapter.build_model(cfg.model, cfg.mask).to(self.device)
        world_batch = cfg.engine.batch_size * self.dist.world_size * cfg.optim.accum_steps
        self.peak_lr = effective_lr(cfg.optim.base_lr, cfg.optim.lr, world_batch)
        self.optimizer = build_optimizer(self.model, self.peak_lr, cfg.optim.weight_decay, tuple(cfg.optim.betas))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.use_grad_scaler)
        self.step = 0
        self.last_checkpoint_step: int | None = None
        self.bad_sources: set[str] = set()
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step = self.last_checkpoint_step = int(state["step"])
            self.bad_sources = set(state.get("bad_sources", []))
            restore_rng(state["rng"])
        steps_per_epoch = len(self.refs) // (cfg.engine.batch_size * self.dist.world_size)
        if steps_per_epoch == 0:
            raise ValueError(f"the archive holds {len(self.refs)} samples, fewer than one global batch "
                             f"({cfg.engine.batch_size} x {self.dist.world_size}); lower engine.batch_size")
        self.total_steps = cfg.engine.max_steps or (cfg.engine.epochs or 1) * steps_per_epoch // cfg.optim.accum_steps
        self.steps_per_epoch = steps_per_epoch
        accum = cfg.optim.accum_steps
        sampler = SeededBatchSampler(len(self.refs), cfg.engine.batch_size, cfg.engine.seed,
                                     rank=self.dist.rank, world_size=self.dist.world_size,
                                     start_step=self.step * accum, max_steps=self.total_steps * accum)
        dataset = ArchiveDataset(self.adapter, self.refs, self.stats, train=True, seed=cfg.engine.seed)
        workers = cfg.data.num_workers
        # Each DataLoader iterator draws a base seed; from a private generator it leaves torch's global
        # RNG (drop path, checkpointed for resume) untouched. Samples are seeded per key anyway.
        loader_rng = torch.Generator().manual_seed(cfg.engine.seed)
        self.loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_items,
                                 generator=loader_rng,
                                 pin_memory=cfg.data.pin_memory and self.device.type == "cuda",
                                 worker_init_fn=_worker_init if workers else None,
                                 persistent_workers=False, prefetch_factor=2 if workers else None)
        self.ddp_model = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                          if self.dist.enabled else self.model)
        truncate = self.step if self.resume else None
        if self.dist.is_main:
            if not self.resume:
                for name in ("metrics.csv", "skipped.csv"):
                    (self.run_dir / name).unlink(missing_ok=True)
            self.metrics_log = CsvLog(self.run_dir / "metrics.csv", METRIC_FIELDS, truncate)
            self.skip_log = CsvLog(self.run_dir / "skipped.csv", SKIP_FIELDS, truncate)
        self.tb = None
        if cfg.engine.tensorboard and self.dist.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                log.warning("engine.tensorboard is on but the tensorboard package is not installed; skipping it")

    # ----- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        path = self.run_dir / CHECKPOINT_NAME
        if self.dist.is_main:
            save_atomic({
                "model": unwrap(self.ddp_model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "rng": capture_rng(),
                "stats": self.stats.as_dict(), "bad_sources": sorted(self.bad_sources),
                "config": self.config.to_dict(), "adapter": self.adapter.name, "version": __version__,
            }, path)
        self.last_checkpoint_step = self.step
        return path

    def checkpoint_note(self) -> str:
        """Where the last good checkpoint is, for the messages of a stopped run."""
        if self.last_checkpoint_step is None:
            return (f"no checkpoint was written yet (engine.checkpoint_every={self.config.engine.checkpoint_every})")
        return f"the last good checkpoint (step {self.last_checkpoint_step}) is kept in {self.run_dir / CHECKPOINT_NAME}"

    # ----- bookkeeping -----------------------------------------------------------------------
    def record_skips(self, batch: dict[str, Any]) -> None:
        gathered = all_gather_objects(batch.get("skipped", []), self.dist)
        for rank, entries in enumerate(gathered):
            for source, reason in entries:
                self.bad_sources.add(source)
                if self.dist.is_main:
                    self.skip_log.write({"step": self.step + 1, "rank": rank, "source": source, "reason": reason})
        limit = self.config.data.max_bad_fraction * len(self.refs)
        if len(self.bad_sources) > limit:
            raise TrainingStopped(
                f"{len(self.bad_sources)} of {len(self.refs)} files are bad, more than data.max_bad_fraction="
                f"{self.config.data.max_bad_fraction}; see {self.run_dir / 'skipped.csv'}; {self.checkpoint_note()}")

    def set_lr(self) -> float:
        o = self.config.optim
        lr = lr_at(self.step, self.peak_lr, self.total_steps, o.warmup_steps, o.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    # ----- the loop ----------------------------------------------------------------------------
    def train(self) -> PretrainResult:
        self.prepare()
        cfg = self.config
        accum = cfg.optim.accum_steps
        progress = None
        if self.dist.is_main and sys.stderr.isatty():
            from tqdm import tqdm

            progress = tqdm(total=self.total_steps, initial=self.step, desc="pretrain", dynamic_ncols=True)
        self.ddp_model.train()
        micro = 0
        loss_sum = torch.zeros((), device=self.device)
        data_start = time.perf_counter()
        step_start = data_start
        data_time = 0.0
        last_loss = math.nan
        try:
            for batch in self.loader:
                data_time += time.perf_counter() - data_start
                self.record_skips(batch)
                lr = self.set_lr()
                sync = (micro + 1) % accum == 0
                ctx = self.ddp_model.no_sync() if (self.dist.enabled and not sync) else contextlib.nullcontext()
                with ctx:
                    with autocast(self.device, self.precision):
                        output = self.ddp_model(**self.adapter.model_inputs(batch, self.device))
                    den = loss_denominator(output)
                    global_den = all_reduce_sum(den, self.dist)
                    # gradient of the global mean: DDP averages over ranks, so scale by world / global_den
                    loss = output.loss.float() * den * self.dist.world_size / global_den / accum
                    self.scaler.scale(loss).backward()
                # this rank's share of the global mean: summed over ranks (below) it is the loss over
                # all masked patches, weighted by denominator as the gradient is
                loss_sum += loss.detach() / self.dist.world_size
                micro += 1
                if not sync:
                    data_start = time.perf_counter()
                    continue
                # Without a GradScaler an inf/NaN gradient would reach the weights (and the next
                # checkpoint) even when the loss is finite, so it stops the run too; with fp16 the
                # scaler skips such steps itself. Both flags are all-reduced so every rank stops.
                check_grads = not self.precision.use_grad_scaler
                if cfg.optim.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                grad_norm = None
                if cfg.optim.clip_grad or check_grads:
                    grad_norm = torch.nn.utils.get_total_norm(
                        [p.grad for p in self.model.parameters() if p.grad is not None])
                grads_ok = torch.isfinite(grad_norm).to(self.device) if check_grads else torch.isfinite(loss_sum)
                flags = torch.stack([torch.isfinite(loss_sum), grads_ok])
                finite = all_reduce_sum(flags.float(), self.dist)
                if (finite < self.dist.world_size).any():
                    what = "loss" if finite[0] < self.dist.world_size else "gradients (with a finite loss)"
                    raise TrainingStopped(
                        f"non-finite {what} at step {self.step + 1}; stopped before the weights were updated; "
                        f"{self.checkpoint_note()}. Lower optim.base_lr, set optim.clip_grad or check the data")
                if cfg.optim.clip_grad:
                    torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), cfg.optim.clip_grad, grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                last_loss = all_reduce_sum(loss_sum, self.dist).item()
                loss_sum.zero_()
                now = time.perf_counter()
                step_time = now - step_start
                row = {"step": self.step, "epoch": round(self.step * accum / self.steps_per_epoch, 4),
                       "loss": f"{last_loss:.6f}", "lr": f"{lr:.6e}", "data_time": f"{data_time:.4f}",
                       "step_time": f"{step_time:.4f}",
                       "samples_per_s": f"{cfg.engine.batch_size * accum * self.dist.world_size / max(step_time, 1e-9):.2f}"}
                if self.dist.is_main:
                    if self.step % cfg.engine.log_every == 0 or self.step == self.total_steps or self.step == 1:
                        self.metrics_log.write(row)
                        log.info("step %d/%d loss %.4f lr %.2e data %.3fs step %.3fs", self.step, self.total_steps,
                                 last_loss, lr, data_time, step_time)
                    if self.tb is not None:
                        self.tb.add_scalar("loss", last_loss, self.step)
                        self.tb.add_scalar("lr", lr, self.step)
                    if cfg.engine.figure_every and (self.step % cfg.engine.figure_every == 0 or self.step == self.total_steps):
                        self.adapter.render_reconstruction(unwrap(self.ddp_model), batch, output,
                                                           self.run_dir / "figures" / f"step{self.step:07d}.png")
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(loss=f"{last_loss:.4f}")
                if self.step % cfg.engine.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save_checkpoint()
                if self.on_step is not None:
                    self.on_step(self.step, row)
                if self.step >= self.total_steps:
                    break
                data_time = 0.0
                data_start = step_start = time.perf_counter()
        finally:
            if progress is not None:
                progress.close()
            if self.tb is not None:
                self.tb.close()
        path = self.run_dir / CHECKPOINT_NAME
        return PretrainResult(self.run_dir, self.step, last_loss, path, len(self.bad_sources))


def pretrain(config: RunConfig, run_dir: str | Path, resume: bool = False, adapter=None,
             on_step: Callable[[int, dict[str, Any]], None] | None = None) -> PretrainResult:
    """Run (or resume) a pretraining job; returns where its files are."""
    trainer = Trainer(config, Path(run_dir), resume=resume, adapter=adapter, on_step=on_step)
    try:
        return trainer.train()
    finally:
        cleanup(trainer.dist)
