"""Installed from its wheel, outside the checkout, mae-domains has its recipes: the demo runs, recipes load
by name, adapters are listed. The wheel is installed without its dependencies into a fresh virtual
environment that sees this environment's packages through a ``.pth`` file (no torch download)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.preset=micro", "model.img_size=64", "model.patch_size=8", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "model.decoder_num_heads=4", "engine.batch_size=4", "data.num_workers=0",
        "engine.max_steps=2", "engine.figure_every=2"]


def run(*cmd, cwd=None, env=None):
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, its bin folder, a clean environment, the wheel) for a wheel built from this checkout."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    source = root / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("mae_domains", "adapters", "configs"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", root / "dist", source)
    (wheel,) = (root / "dist").glob("mae_domains-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # installed before the .pth below exists, so pip sees an empty environment (never this one's packages)
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel, env=env)
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "deps_of_the_test_environment.pth").write_text("\n".join(sorted(ours)) + "\n")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return python, venv / "bin", env, wheel


def test_wheel_holds_recipes_license_and_typing_marker(installed):
    names = zipfile.ZipFile(installed[3]).namelist()
    recipes = sorted(n.split("/")[-1] for n in names if n.startswith("mae_domains/recipes/"))
    assert recipes == sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert "mae_domains/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("configs/") for n in names)


@pytest.mark.slow
def test_demo_recipes_and_adapters_from_the_installed_wheel(installed, tmp_path):
    python, bin_dir, env, _ = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import mae_domains, mae_image; print(mae_domains.__file__, mae_image.__file__)",
                cwd=elsewhere, env=env)
    assert str(ROOT) not in where and str(bin_dir.parent) in where

    out = run(bin_dir / "mae-domains", "-q", "demo", "--out", "demo", *TINY, cwd=elsewhere, env=env)
    assert (elsewhere / "demo" / "run" / "checkpoint.pt").is_file() and "final loss" in out

    assert "medical_xray_vit_base  (adapter medical.xray" in run(bin_dir / "mae-domains", "recipes", cwd=elsewhere, env=env)
    shown = run(bin_dir / "mae-domains", "config", "show", "--config", "xray_vit_base", cwd=elsewhere, env=env)
    assert "adapter: medical.xray" in shown and "in_chans: 1" in shown
    listed = run(bin_dir / "mae-domains", "adapters", cwd=elsewhere, env=env)
    assert len([line for line in listed.splitlines() if " api 1.0 " in line]) == 8
