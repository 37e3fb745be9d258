"""What a run tells as it goes: a start-up summary, a log line (and metrics.csv row) often enough that
even a short run shows progress, and reconstruction figures through the run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mae_domains.progress import ProgressClock

MILESTONES = 10  # a log row at every tenth of the run, whatever log_every says
# metrics.csv columns shown in the log line: (column, label, unit)
HEALTH_LABELS = (("recon_psnr", "psnr", "dB"), ("pred_std_ratio", "std-ratio", ""), ("grad_norm", "grad-norm", ""),
                 ("data_share", "data-share", "%"), ("knn_top1", "knn-top1", "%"))


def at_milestone(step: int, total: int, parts: int = MILESTONES) -> bool:
    """``step`` is the first step past one of ``parts`` equal parts of a ``total``-step run."""
    return total > 0 and step * parts // total != (step - 1) * parts // total


def should_log(step: int, total: int, log_every: int | None) -> bool:
    """First and last step, every ``log_every`` steps (None: milestones only) and every tenth of the run."""
    return step == 1 or step == total or bool(log_every and step % log_every == 0) or at_milestone(step, total)


def log_line(row: dict[str, Any], total: int, clock: ProgressClock | None = None) -> str:
    """The log line of a metrics.csv row: loss and lr, then the health columns present (engine.health), then
    elapsed time, rate and time left (``clock``)."""
    parts = [f"step {row['step']}/{total}", f"loss {float(row['loss']):.4f}", f"lr {float(row['lr']):.2e}"]
    for key, label, unit in HEALTH_LABELS:
        if row.get(key) not in (None, ""):
            value = float(row[key])
            parts.append(f"{label} {value:.1%}" if unit == "%" else f"{label} {value:.4g}{unit}")
    parts += [f"data {float(row['data_time']):.3f}s", f"step {float(row['step_time']):.3f}s"]
    line = " ".join(parts)
    return line if clock is None else f"{line} ({clock.describe(int(row['step']))})"


MIN_FIGURE_INTERVAL = 50


def figure_interval(figure_every: int | None, total: int) -> int:
    """Steps between reconstruction figures: ``figure_every`` (0 = none), None = a tenth of the run but
    at most one every :data:`MIN_FIGURE_INTERVAL` steps (a short run draws one figure, at its end)."""
    if figure_every is None:
        return max(MIN_FIGURE_INTERVAL, math.ceil(total / MILESTONES))
    return figure_every


def should_draw(step: int, total: int, interval: int) -> bool:
    return interval > 0 and (step % interval == 0 or step == total)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class StartupSummary:
    """The facts a user checks before leaving a run alone."""

    run_dir: Path
    mode: str  # "new run", "resumed at step N", "new run (overwriting ...)"
    adapter: str
    files: int
    samples: int
    skipped: int
    device: str
    precision: str
    threads: int
    workers: int
    parameters: int
    trainable: int
    start_step: int
    total_steps: int
    steps_per_epoch: int
    global_batch: int
    checkpoint_every: int
    log_every: int | None
    figure_every: int
    scenes: int = 0  # scenes the samples are cut from (0: samples are files, frames or volumes)
    left_out: int = 0  # files discovery left out (listed in skipped.csv)

    def data_line(self) -> str:
        """``39 samples from 8 files`` or ``120 samples from 1 scene (13 files)``, and what was skipped."""
        files = plural(self.files, "file")
        origin = f"{plural(self.scenes, 'scene')} ({files})" if self.scenes else files
        left_out = f"; {plural(self.left_out, 'file')} left out (see skipped.csv)" if self.left_out else ""
        return (f"data: {plural(self.samples, 'sample')} from {origin} (adapter {self.adapter}); "
                f"{self.skipped} skipped so far{left_out}")

    def lines(self) -> list[str]:
        figures = f"every {self.figure_every} steps" if self.figure_every else "off"
        log_every = f"every {self.log_every} steps and" if self.log_every else ""
        return [
            f"run folder {self.run_dir.resolve()} ({self.mode})",
            self.data_line(),
            f"compute: {self.device}, {self.precision}, {self.threads} threads, {self.workers} loader workers",
            f"model: {self.parameters:,} parameters ({self.trainable:,} trainable)",
            f"steps: {self.start_step} -> {self.total_steps} ({self.steps_per_epoch} per epoch, "
            f"global batch {self.global_batch})",
            f"checkpoint every {self.checkpoint_every} steps; log {log_every} every tenth of the run; "
            f"figures {figures}",
        ]
