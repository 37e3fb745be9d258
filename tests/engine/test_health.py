"""Training-health metrics: the formulas against a direct computation, and the collapse detector on real
(tiny) pretraining runs: a decoder forced to predict the mean shows a std ratio near 0, a normal run
one near 1."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mae_domains.engine import pretrain
from mae_domains.engine.health import TrainingHealth
from mae_domains.engine.reporting import log_line
from mae_domains.engine.run_files import read_csv
from mae_domains.registry import get_adapter

from .conftest import make_config


def fake_output(seed: int) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(3, 5, 12, generator=g) * 2 + 1
    pred = target + 0.3 * torch.randn(3, 5, 12, generator=g)
    weight = (torch.rand(3, 5, 12, generator=g) > 0.1).float()
    token_weight = (torch.rand(3, 5, generator=g) > 0.4).float()
    return SimpleNamespace(pred=pred, target=target, weight=weight, token_weight=token_weight)


def direct(outputs: list[SimpleNamespace]) -> tuple[float, float]:
    """PSNR and std ratio of one step straight from the definitions, in float64 numpy."""
    p, t = [], []
    for out in outputs:
        keep = (out.weight * out.token_weight.unsqueeze(-1)).numpy() > 0
        p.append(out.pred.numpy()[keep].astype(np.float64))
        t.append(out.target.numpy()[keep].astype(np.float64))
    p, t = np.concatenate(p), np.concatenate(t)
    mse = np.mean((p - t) ** 2)
    psnr = 10 * math.log10((t.max() - t.min()) ** 2 / mse)
    return psnr, p.std() / t.std()


def test_metrics_match_direct_formula_over_micro_batches():
    health = TrainingHealth(torch.device("cpu"))
    steps = [[fake_output(0), fake_output(1)], [fake_output(2)]]  # 2 micro-batches, then 1
    for outputs in steps:
        for out in outputs:
            health.add_micro_batch(out)
        health.end_step(torch.tensor(2.0 + len(outputs)), data_time=0.25, step_time=1.0)
    row = health.read()
    expected = [direct(outputs) for outputs in steps]
    assert float(row["recon_psnr"]) == pytest.approx(np.mean([e[0] for e in expected]), abs=1e-3)
    assert float(row["pred_std_ratio"]) == pytest.approx(np.mean([e[1] for e in expected]), abs=1e-4)
    assert float(row["grad_norm"]) == pytest.approx(3.5)
    assert float(row["data_share"]) == pytest.approx(0.25)
    assert health.read()["recon_psnr"] == ""  # reset after reading


def test_skipped_steps_and_outputs_without_predictions():
    health = TrainingHealth(torch.device("cpu"))
    health.add_micro_batch(SimpleNamespace(loss=torch.tensor(1.0)))  # no pred / target: ignored
    health.end_step(torch.tensor(float("inf")), 0.0, 0.5)  # a step the GradScaler skips
    health.end_step(torch.tensor(4.0), 0.0, 0.5)
    row = health.read()
    assert row["recon_psnr"] == row["pred_std_ratio"] == ""
    assert float(row["grad_norm"]) == 4.0 and float(row["data_share"]) == 0.0


def test_log_line_names_the_health_columns():
    row = {"step": 3, "loss": "0.5", "lr": "1e-4", "data_time": "0.1", "step_time": "0.4", "recon_psnr": "12.5",
           "pred_std_ratio": "0.91", "grad_norm": "1.2", "data_share": "0.25", "knn_top1": ""}
    line = log_line(row, 10)
    assert "psnr 12.5dB" in line and "std-ratio 0.91" in line and "data-share 25.0%" in line
    assert "knn" not in line


def write_colour_pngs(folder: Path, count: int, seed: int = 0, size: int = 40) -> Path:
    """Images of one random colour each with a faint gradient: a masked patch is predictable from the
    visible ones (its colour), unlike pure noise, whose best prediction is the mean."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-20, 20, size)[None, :, None]
    for i in range(count):
        colour = rng.integers(30, 226, (1, 1, 3))
        image = np.broadcast_to(colour + ramp, (size, size, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"c{i:03d}.png")
    return folder


# 30 steps of the micro model at a high learning rate: the colour is learnt (std ratio ~0.95 at the end).
SETTINGS = ("engine.batch_size=8", "engine.max_steps=30", "engine.log_every=10", "engine.checkpoint_every=100",
            "engine.figure_every=0", "optim.lr=1e-2", "optim.warmup_steps=3", "model.norm_pix_loss=false",
            "mask.ratio=0.5", "data.options.crop_scale=[0.8,1.0]", "engine.threads=1")


def mean_predictor_adapter(config):
    """The image adapter whose model's output layer has zero weights, frozen: only its bias learns, so
    every prediction is the same vector (the mean patch), whatever the input."""
    adapter = get_adapter(config.adapter, config.data.options)
    build = adapter.build_model

    def build_mean_predictor(*args, **kwargs):
        model = build(*args, **kwargs)
        layer = model.head.pred
        torch.nn.init.zeros_(layer.weight)
        layer.weight.requires_grad_(False)
        return model

    adapter.build_model = build_mean_predictor
    return adapter


def last_row(run_dir: Path) -> dict[str, str]:
    rows = read_csv(run_dir / "metrics.csv")
    assert all(r["pred_std_ratio"] and r["recon_psnr"] and r["grad_norm"] and r["data_share"] for r in rows)
    return rows[-1]


@pytest.fixture(scope="module")
def colour_archive(tmp_path_factory) -> Path:
    return write_colour_pngs(tmp_path_factory.mktemp("health") / "archive", 32)


def test_collapse_ratio_near_zero_for_mean_predictor_and_near_one_for_normal_run(colour_archive, tmp_path, caplog):
    config = make_config(colour_archive, *SETTINGS)
    with caplog.at_level("INFO", logger="mae_domains.engine"):
        pretrain(config, tmp_path / "normal")
    normal = last_row(tmp_path / "normal")
    assert "std-ratio" in caplog.text and "grad-norm" in caplog.text
    collapsed_config = make_config(colour_archive, *SETTINGS)
    pretrain(collapsed_config, tmp_path / "mean", adapter=mean_predictor_adapter(collapsed_config))
    collapsed = last_row(tmp_path / "mean")
    assert float(collapsed["pred_std_ratio"]) < 0.2
    assert 0.8 < float(normal["pred_std_ratio"]) < 1.25
    assert float(normal["recon_psnr"]) > float(collapsed["recon_psnr"]) + 3  # dB
    assert 0.0 <= float(normal["data_share"]) <= 1.0
