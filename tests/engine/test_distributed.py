"""Two ``gloo`` processes on CPU (``torchrun``) match one process with the same global batch.

Per-rank batch 4 x 2 ranks vs batch 8 x 1: the sampler gives each rank its contiguous share of the
global batch, and per-sample seeds make crops, flips and masks independent of the process count.
Drop path stays off: it draws from each process's own torch RNG, which no split can reproduce.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mae_domains.engine import pretrain

from .conftest import assert_optimizer_equal, assert_tensors_equal, load_checkpoint, make_config, write_pngs
from .dist_pretrain import WeightedImageAdapter

pytestmark = pytest.mark.slow

STEPS = 5  # 3 steps per epoch at global batch 8: crosses an epoch boundary
COMMON = [f"engine.max_steps={STEPS}", "engine.checkpoint_every=100", "optim.warmup_steps=2", "optim.clip_grad=1.0",
          "engine.seed=5"]
SCRIPT = Path(__file__).with_name("dist_pretrain.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory) -> dict[str, Path]:
    """One ``torchrun`` launch, three jobs: plain image adapter, weighted loss, NaN on rank 1."""
    root = tmp_path_factory.mktemp("dist")
    archive = root / "archive"
    write_pngs(archive, 24, seed=2)
    per_rank = ["engine.batch_size=4", "data.num_workers=0", *COMMON]
    jobs = {
        "image": {"adapter": "image", "overrides": per_rank},
        "weighted": {"adapter": "weighted", "overrides": per_rank},
        "nan_rank1": {"adapter": "nan_rank1", "overrides": per_rank, "expect_stop": True},
    }
    for name, job in jobs.items():
        job.update(archive=str(archive), run_dir=str(root / name))
    (root / "jobs.json").write_text(json.dumps(list(jobs.values())))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(SCRIPT), str(root / "jobs.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return {"archive": archive, **{name: Path(job["run_dir"]) for name, job in jobs.items()}}


def reports(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.parametrize("adapter", ["image", "weighted"])
def test_two_gloo_processes_match_one_process(two_process_runs, tmp_path, adapter):
    """The weighted variant gives ranks different loss denominators (1..4 per sample), so it only
    matches if the engine all-reduces them; the plain one uses 2 loader workers on the one-process side."""
    runs = two_process_runs
    assert [r["status"] for r in reports(runs[adapter])] == ["finished", "finished"]
    cfg = make_config(runs["archive"], "engine.batch_size=8", "data.num_workers=2", *COMMON)
    single = tmp_path / "single"
    pretrain(cfg, single, adapter=WeightedImageAdapter(cfg.data.options) if adapter == "weighted" else None)
    one, two = load_checkpoint(single), load_checkpoint(runs[adapter])
    assert one["step"] == two["step"] == STEPS
    assert_tensors_equal(one["model"], two["model"], exact=False, atol=1e-5)
    assert_optimizer_equal(one["optimizer"], two["optimizer"], exact=False, atol=1e-5)
    # the logged loss is the global mean as well
    lines = [(run / "metrics.csv").read_text().splitlines() for run in (single, runs[adapter])]
    losses = [[float(row.split(",")[2]) for row in rows[1:]] for rows in lines]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_ranks_differ_without_denominator_all_reduce(two_process_runs, tmp_path):
    """Control: a one-process run that averages per-half means (what ranks would do without the
    all-reduced denominator) lands elsewhere, so the previous test can tell the two apart."""
    runs = two_process_runs
    cfg = make_config(runs["archive"], "engine.batch_size=8", "data.num_workers=0", *COMMON)
    adapter = WeightedImageAdapter(cfg.data.options)
    base_build = adapter.build_model

    def mean_of_half_means(model_cfg, mask_cfg):
        model = base_build(model_cfg, mask_cfg)
        forward = model.forward

        def halves(images, mask_seeds):
            a = forward(images.select(slice(0, 4)), mask_seeds[:4])
            b = forward(images.select(slice(4, None)), mask_seeds[4:])
            a.loss = (a.loss + b.loss) / 2
            a.loss_denominator = None
            a.mask = torch.cat([a.mask, b.mask])
            return a

        model.forward = halves
        return model

    adapter.build_model = mean_of_half_means
    pretrain(cfg, tmp_path / "naive", adapter=adapter)
    naive, two = load_checkpoint(tmp_path / "naive"), load_checkpoint(runs["weighted"])
    with pytest.raises(AssertionError):
        assert_tensors_equal(naive["model"], two["model"], exact=False, atol=1e-5)


def test_non_finite_on_one_rank_stops_every_rank(two_process_runs):
    """Rank 1 alone sees a NaN loss; the all-reduced flag stops both ranks (no hang, same message)."""
    rank_reports = reports(two_process_runs["nan_rank1"])
    assert [r["status"] for r in rank_reports] == ["stopped", "stopped"]
    for report in rank_reports:
        assert "non-finite" in report["message"] and "at step 3" in report["message"]
