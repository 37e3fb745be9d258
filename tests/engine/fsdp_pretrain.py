"""Run FSDP2 pretraining jobs under ``torchrun`` for the FSDP tests (not collected by pytest).

Usage: ``python -m torch.distributed.run --nproc_per_node 2 fsdp_pretrain.py JOBS.json``; each job is
``{"archive", "run_dir", "overrides", "crash_at", "resume"}``; every rank writes ``rank<r>.json`` (steps run,
or the crash) into the job's run directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

try:  # imported by the tests as tests.engine.<name>, run by torchrun as a script
    from .conftest import MICRO  # fp32 pinned there
except ImportError:
    from conftest import MICRO  # noqa: E402


class SimulatedCrash(Exception):
    pass


def run_job(job: dict[str, Any]) -> None:
    from mae_domains.config import load_config
    from mae_domains.engine import pretrain

    cfg = load_config(None, [*MICRO, f"data.sources=[{job['archive']}]", *job["overrides"]])
    rank = int(os.environ.get("RANK", "0"))
    crash_at = job.get("crash_at")

    def on_step(step: int, row: dict) -> None:
        if step == crash_at:
            raise SimulatedCrash(f"after step {step}")

    report: dict[str, Any] = {"rank": rank}
    try:
        result = pretrain(cfg, job["run_dir"], resume=job.get("resume", False), on_step=on_step)
        report.update(status="finished", steps=result.steps, loss=result.final_loss)
    except SimulatedCrash as err:
        report.update(status="crashed", message=str(err))
    Path(job["run_dir"], f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    import torch.distributed as dist

    import mae_domains.engine.trainer as trainer_module

    real_cleanup = trainer_module.cleanup
    jobs = json.loads(Path(sys.argv[1]).read_text())
    for i, job in enumerate(jobs):
        # the jobs share one process group (see dist_pretrain.py): only the last one tears it down
        last = i == len(jobs) - 1
        trainer_module.cleanup = real_cleanup if last else (lambda info: dist.barrier() if info.enabled else None)
        run_job(job)
