"""Run pretraining jobs under ``torchrun`` for the distributed tests (not collected by pytest).

Usage: ``python -m torch.distributed.run --nproc_per_node 2 dist_pretrain.py JOBS.json`` where the JSON is
a list of ``{"archive", "run_dir", "overrides", "adapter", "expect_stop"}``. Every rank writes
``rank<r>.json`` into the job's run directory: what happened there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from mae_image import ImageAdapter  # noqa: E402

try:  # imported by the tests as tests.engine.<name>, run by torchrun as a script
    from .conftest import MICRO  # fp32 pinned there
except ImportError:
    from conftest import MICRO  # noqa: E402


class WeightedMAE(nn.Module):
    """An MAE whose loss weights masked patches by a per-sample weight (1..4): ranks see different loss
    denominators, as with nodata masks, so the engine must all-reduce them to match one process."""

    def __init__(self, mae: nn.Module) -> None:
        super().__init__()
        self.mae = mae

    def forward(self, images: Any, mask_seeds: torch.Tensor) -> Any:
        out = self.mae(images, mask_seeds=mask_seeds)
        per_patch = ((out.pred.float() - out.target) ** 2).mean(dim=-1)  # the decoded (masked) tokens
        weight = (1 + mask_seeds % 4).to(per_patch)[:, None] * out.token_weight
        denominator = weight.sum()
        return SimpleNamespace(loss=(per_patch * weight).sum() / denominator, loss_denominator=denominator,
                               mask=out.mask, pred=out.pred)


class WeightedImageAdapter(ImageAdapter):
    def build_model(self, model, mask):
        return WeightedMAE(super().build_model(model, mask))


class NanOnRankOneAdapter(ImageAdapter):
    """Feeds NaN images on rank 1 only, from its third micro-batch on: rank 0's own loss stays finite."""

    calls = 0

    def model_inputs(self, batch, device):
        inputs = super().model_inputs(batch, device)
        NanOnRankOneAdapter.calls += 1
        if int(os.environ.get("RANK", "0")) == 1 and NanOnRankOneAdapter.calls >= 3:
            inputs["images"].images = inputs["images"].images * float("nan")
        return inputs


ADAPTERS = {"image": ImageAdapter, "weighted": WeightedImageAdapter, "nan_rank1": NanOnRankOneAdapter}


def run_job(job: dict[str, Any]) -> None:
    from mae_domains.config import load_config
    from mae_domains.engine import TrainingStopped, pretrain

    cfg = load_config(None, [*MICRO, f"data.sources=[{job['archive']}]", *job["overrides"]])
    adapter = ADAPTERS[job.get("adapter", "image")](cfg.data.options)
    rank = int(os.environ.get("RANK", "0"))
    report: dict[str, Any] = {"rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1"))}
    try:
        result = pretrain(cfg, job["run_dir"], adapter=adapter)
        report.update(status="finished", steps=result.steps, loss=result.final_loss)
    except TrainingStopped as err:
        report.update(status="stopped", message=str(err))
        if not job.get("expect_stop"):
            raise
    Path(job["run_dir"], f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    import torch.distributed as dist

    import mae_domains.engine.trainer as trainer_module

    real_cleanup = trainer_module.cleanup
    jobs = json.loads(Path(sys.argv[1]).read_text())
    for i, job in enumerate(jobs):
        # Re-creating a gloo group on torchrun's store reads the previous group's stale addresses, so
        # the jobs share one process group: the engine's init reuses it, and only the last job's
        # cleanup (the real one) tears it down; the others just meet at a barrier.
        last = i == len(jobs) - 1
        trainer_module.cleanup = real_cleanup if last else (lambda info: dist.barrier() if info.enabled else None)
        run_job(job)
