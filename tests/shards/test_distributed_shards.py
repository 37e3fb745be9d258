"""Two ``gloo`` processes (``torchrun``) training from prepared shards give the weights of one process
training from the raw files with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mae_domains.engine import pretrain
from mae_domains.shards import prepare_archive
from tests.engine.conftest import assert_optimizer_equal, assert_tensors_equal, load_checkpoint, make_config, write_pngs
from tests.engine.test_distributed import COMMON, SCRIPT, STEPS, free_port

pytestmark = pytest.mark.slow


def test_two_processes_from_shards_match_one_process_from_files(tmp_path):
    archive = tmp_path / "archive"
    write_pngs(archive, 24, seed=2)
    shards = tmp_path / "shards"
    prepare_archive(make_config(archive), shards, workers=1, progress=False)
    job = {"adapter": "image", "archive": str(shards), "run_dir": str(tmp_path / "two"),
           "overrides": ["engine.batch_size=4", "data.num_workers=1", *COMMON]}
    (tmp_path / "jobs.json").write_text(json.dumps([job]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(SCRIPT), str(tmp_path / "jobs.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    pretrain(make_config(archive, "engine.batch_size=8", "data.num_workers=0", *COMMON), tmp_path / "one")
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert one["step"] == two["step"] == STEPS
    assert_tensors_equal(one["model"], two["model"], exact=False, atol=1e-5)
    assert_optimizer_equal(one["optimizer"], two["optimizer"], exact=False, atol=1e-5)
