"""FSDP2 (``engine.distributed=fsdp``) on CPU: two ``gloo`` processes with sharded weights and optimizer
state match one process with the same global batch; checkpoints hold the full (unsharded) state in the
layout of an unsharded run, and a crashed sharded run resumes bitwise. Activation checkpointing is on
in the sharded runs, so the two options are tested together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mae_domains.config import ConfigError, load_config
from mae_domains.engine import pretrain

from .conftest import assert_optimizer_equal, assert_tensors_equal, load_checkpoint, make_config, write_pngs
from .test_distributed import free_port

STEPS = 5
COMMON = [f"engine.max_steps={STEPS}", "engine.checkpoint_every=2", "optim.warmup_steps=2", "optim.clip_grad=1.0",
          "engine.seed=5", "engine.figure_every=0"]
SHARDED = ["engine.batch_size=4", "data.num_workers=0", "engine.distributed=fsdp",
           "engine.activation_checkpointing=true", *COMMON]
SCRIPT = Path(__file__).with_name("fsdp_pretrain.py")


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory) -> dict[str, Path]:
    """One ``torchrun`` launch: a full sharded run; a sharded run that crashes after step 3 (checkpoint
    of step 2), then resumes to the end."""
    root = tmp_path_factory.mktemp("fsdp")
    archive = root / "archive"
    write_pngs(archive, 24, seed=2)
    jobs = [
        {"run_dir": str(root / "full"), "overrides": SHARDED},
        {"run_dir": str(root / "resumed"), "overrides": SHARDED, "crash_at": 3},
        {"run_dir": str(root / "resumed"), "overrides": SHARDED, "resume": True},
    ]
    for job in jobs:
        job["archive"] = str(archive)
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(SCRIPT), str(root / "jobs.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return {"archive": archive, "full": root / "full", "resumed": root / "resumed"}


@pytest.mark.slow
def test_two_sharded_processes_match_one_process(sharded_runs, tmp_path):
    runs = sharded_runs
    reports = [json.loads((runs["full"] / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["status"] for r in reports] == ["finished", "finished"]
    cfg = make_config(runs["archive"], "engine.batch_size=8", "data.num_workers=0", *COMMON)
    pretrain(cfg, tmp_path / "single")
    one, two = load_checkpoint(tmp_path / "single"), load_checkpoint(runs["full"])
    assert one["step"] == two["step"] == STEPS
    # the full state, not a shard: same keys and shapes as the unsharded run's
    assert {k: v.shape for k, v in one["model"].items()} == {k: v.shape for k, v in two["model"].items()}
    assert_tensors_equal(one["model"], two["model"], exact=False, atol=1e-5)
    assert_optimizer_equal(one["optimizer"], two["optimizer"], exact=False, atol=1e-5)
    assert all(not isinstance(v, torch.distributed.tensor.DTensor) for v in two["model"].values())
    losses = [[float(row.split(",")[2]) for row in (run / "metrics.csv").read_text().splitlines()[1:]]
              for run in (tmp_path / "single", runs["full"])]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    # the sharded checkpoint resumes in one process (a run may move between DDP, FSDP and one process)
    # (one process ignores engine.distributed), with the optimizer state in place
    copy = shutil.copytree(runs["full"], tmp_path / "moved")
    resumed_single = pretrain(make_config(runs["archive"], *SHARDED, "engine.max_steps=6"), copy, resume=True)
    assert resumed_single.steps == 6
    after = load_checkpoint(copy)
    assert after["step"] == 6 and int(after["optimizer"]["state"][0]["step"]) == 6


@pytest.mark.slow
def test_sharded_run_resumes_bitwise(sharded_runs):
    runs = sharded_runs
    reports = [json.loads((runs["resumed"] / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["status"] for r in reports] == ["finished", "finished"]
    full, resumed = load_checkpoint(runs["full"]), load_checkpoint(runs["resumed"])
    assert full["step"] == resumed["step"] == STEPS
    assert_tensors_equal(full["model"], resumed["model"], exact=True)
    assert_optimizer_equal(full["optimizer"], resumed["optimizer"], exact=True)


def test_bad_strategy_and_fp16_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="engine.distributed must be 'ddp' or 'fsdp'.*did you mean 'fsdp'"):
        load_config(None, ["engine.distributed=fsdp2"])
    with pytest.raises(ConfigError, match="fsdp does not support engine.precision=fp16"):
        load_config(None, ["engine.distributed=fsdp", "engine.precision=fp16"])
