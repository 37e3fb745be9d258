"""Shared helpers for the engine tests: tiny PNG archives, micro-model configs, state comparison."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# A 2-block, 64-wide ViT on 32 px images with 8 px patches (16 tokens): a step takes milliseconds.
MICRO = [
    "model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
    "model.decoder_depth=1", "model.decoder_num_heads=4", "data.stats_samples=16", "engine.device=cpu",
    # fp32: the equivalence tests (accumulation, DDP, FSDP) compare to 1e-5, below bf16 rounding; ``auto`` is
    # bf16 on CPUs with native bf16 (tests/engine/test_precision.py covers that path)
    "engine.precision=fp32",
]


def write_pngs(folder: Path, count: int, seed: int = 0, size: int = 40, prefix: str = "img") -> list[Path]:
    """``count`` random RGB PNGs (``size`` px, larger than the 32 px crop so RandomResizedCrop matters)."""
    folder.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 256, (1, 1, 3))
        noise = rng.integers(-60, 60, (size, size, 3))
        array = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = folder / f"{prefix}{i:03d}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def png_archive(tmp_path: Path) -> Path:
    """24 images: 6 steps per epoch at batch 4, 3 at batch 8."""
    folder = tmp_path / "archive"
    write_pngs(folder, 24)
    return folder


def make_config(archive: Path | str, *overrides: str):
    from mae_domains.config import load_config

    return load_config(None, [*MICRO, f"data.sources=[{archive}]", *overrides])


def load_checkpoint(run_dir: Path) -> dict:
    from mae_domains.engine.checkpoint import load_resume_state

    return load_resume_state(run_dir)


def assert_tensors_equal(a: dict, b: dict, exact: bool = True, atol: float = 1e-5, what: str = "model") -> None:
    assert a.keys() == b.keys(), f"{what}: different keys"
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), f"{what}: {key} differs"
        else:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=f"{what}: {key} differs")


def max_weight_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def flatten_optimizer(state: dict) -> dict:
    """Optimizer state (exp_avg, exp_avg_sq, step per parameter) as one flat name -> tensor mapping."""
    flat = {}
    for pid, per_param in state["state"].items():
        for name, value in per_param.items():
            flat[f"{pid}.{name}"] = torch.as_tensor(value)
    return flat


def assert_optimizer_equal(a: dict, b: dict, exact: bool = True, atol: float = 1e-5) -> None:
    assert_tensors_equal(flatten_optimizer(a), flatten_optimizer(b), exact=exact, atol=atol, what="optimizer")
    for ga, gb in zip(a["param_groups"], b["param_groups"], strict=True):
        assert {k: v for k, v in ga.items() if k != "params"} == {k: v for k, v in gb.items() if k != "params"}


class StopAfter(Exception):
    """Raised by an ``on_step`` callback to simulate a crash."""


def crash_at(step: int):
    def on_step(current: int, row: dict) -> None:
        if current == step:
            raise StopAfter(f"simulated crash after step {current}")

    return on_step
