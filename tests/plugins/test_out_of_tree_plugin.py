"""A third-party plugin distribution is pip-installed, listed, conformance-checked and pretrained."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "heightmap_plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """Install the plugin into its own target folder and expose it through PYTHONPATH only."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(FIXTURE, src)
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mae_domains.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_plugin_is_listed_checked_and_pretrains(plugin_env, tmp_path):
    listed = cli(plugin_env, "adapters")
    assert listed.returncode == 0, listed.stderr
    assert "terrain.heightmap" in listed.stdout and "image" in listed.stdout

    checked = cli(plugin_env, "check-adapter", "terrain.heightmap")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 failed" in checked.stdout

    archive = tmp_path / "dems"
    archive.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        np.save(archive / f"tile{i}.npy", rng.normal(200, 50, size=(48, 48)).astype(np.float32))
    run = tmp_path / "run"
    result = cli(plugin_env, "-q", "pretrain", "--adapter", "terrain.heightmap", "--data", str(archive), "--out", str(run),
                 "model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.in_chans=1",
                 "model.decoder_embed_dim=32", "model.decoder_depth=1", "model.decoder_num_heads=4",
                 "engine.batch_size=4", "engine.max_steps=3", "data.num_workers=0")
    assert result.returncode == 0, result.stderr
    assert (run / "checkpoint.pt").is_file()
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and rows[-1].startswith("3,")


def test_plugin_not_visible_without_install():
    listed = subprocess.run([sys.executable, "-m", "mae_domains.cli", "adapters"], capture_output=True, text=True)
    assert "terrain.heightmap" not in listed.stdout
