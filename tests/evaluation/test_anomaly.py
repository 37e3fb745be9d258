"""The ``anomaly`` protocol: seeded multi-mask reconstruction error, AUROC against normal / abnormal."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mae_domains.cli import main
from mae_domains.evaluation import evaluate_checkpoint, run_protocol
from mae_domains.evaluation.anomaly import abnormal_flags, anomaly_scores, auroc, mask_seed
from mae_domains.models.embeddings.patch2d import PatchEmbed2D
from mae_domains.protocols import get_protocol
from tests.evaluation.helpers import dict_loader, micro_grid_mae

SIZE = 32


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return micro_grid_mae(PatchEmbed2D(1, 64, 8)).eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_scores_do_not_depend_on_batch_composition():
    model, images = _model(), _images(12)
    labels = torch.arange(12) % 2
    whole, _, ids, _ = anomaly_scores(model, dict_loader(images, labels, batch_size=12), masks=3, device="cpu")
    small, _, _, _ = anomaly_scores(model, dict_loader(images, labels, batch_size=5), masks=3, device="cpu")
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    shuffled, _, shuffled_ids, _ = anomaly_scores(model, dict_loader(images[order], labels[order], batch_size=4),
                                                  masks=3, device="cpu")
    np.testing.assert_allclose(whole, small, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole[order.numpy()], shuffled, rtol=1e-5, atol=1e-6)
    assert len(set(ids)) == 12 and len(shuffled_ids) == 12


def test_scores_average_seeded_masks():
    model, images = _model(), _images(6)
    loader = dict_loader(images, torch.zeros(6, dtype=torch.long), batch_size=6)
    eight, _, _, _ = anomaly_scores(model, loader, masks=8, seed=0, device="cpu")
    again, _, _, _ = anomaly_scores(model, loader, masks=8, seed=0, device="cpu")
    other, _, _, _ = anomaly_scores(model, loader, masks=8, seed=1, device="cpu")
    np.testing.assert_array_equal(eight, again)
    assert not np.allclose(eight, other)
    # the mean of the per-mask scores, each mask seeded by (seed, mask index)
    singles = []
    for k in range(8):
        with torch.no_grad():
            out = model(images, mask_seeds=[mask_seed(0, k)] * 6)
        singles.append((((out.pred - out.target) ** 2 * out.weight).sum((1, 2)) / out.weight.sum((1, 2))).numpy())
    np.testing.assert_allclose(eight, np.mean(singles, axis=0), rtol=1e-5)
    assert len({mask_seed(0, k) for k in range(8)}) == 8


def test_protocol_needs_the_decoder_and_normal_abnormal_labels():
    model, images = _model(), _images(8)
    labels = torch.arange(8) % 2
    loader = dict_loader(images, labels, batch_size=4)
    with pytest.raises(ValueError, match="decoder"):
        run_protocol("anomaly", None, loader, encoder=model.encoder, class_names=["abnormal", "normal"], device="cpu")
    records = run_protocol("anomaly", None, loader, model=model, class_names=["abnormal", "normal"], device="cpu",
                           settings={"masks": 2})
    summary = {r.metric: r.value for r in records}
    assert set(summary) == {"auroc", "mean_score_normal", "mean_score_abnormal"} and 0 <= summary["auroc"] <= 1
    with pytest.raises(ValueError, match="normal"):
        run_protocol("anomaly", None, loader, model=model, class_names=["cat", "dog"], device="cpu")
    assert not get_protocol("anomaly").needs_train
    assert auroc(np.array([0.1, 0.2, 0.9]), np.array([False, False, True])) == 1.0
    np.testing.assert_array_equal(abnormal_flags(np.array([0, 1, 0]), ["abnormal", "normal"]), [True, False, True])


def test_no_interval_below_a_minimum_count_per_class(caplog):
    """4 images (2 + 2) give a bootstrap interval of [1.0, 1.0] for a perfect split: none is reported,
    with a warning; 10 of each get one."""
    import logging

    model = _model()
    for n, expect_interval in ((4, False), (20, True)):
        loader = dict_loader(_images(n), torch.arange(n) % 2, batch_size=4)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mae_domains.evaluation.anomaly"):
            records = run_protocol("anomaly", None, loader, model=model, class_names=["abnormal", "normal"],
                                   device="cpu", settings={"masks": 1, "bootstrap_resamples": 200})
        record = next(r for r in records if r.metric == "auroc")
        assert (record.ci_low is not None and record.ci_high is not None) == expect_interval, n
        assert ("fewer than 10 per class" in caplog.text) != expect_interval
        if not expect_interval:
            assert "2 normal and 2 abnormal" in caplog.text


# ----- end to end: a short-pretrained micro model finds a structure it never saw ------------------------------

def _smooth(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    a, b, c = rng.uniform(-1, 1, 3)
    return 0.5 + 0.25 * (a * x + b * y) + 0.15 * np.sin(2 * np.pi * (x * rng.uniform(0.3, 1) + c))


def _with_checkerboard(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = 10
    r, c = rng.integers(0, SIZE - side, 2)
    yy, xx = np.mgrid[0:side, 0:side]
    image[r:r + side, c:c + side] = np.where((yy // 2 + xx // 2) % 2 == 0, 0.05, 0.95)
    return image


def _write(folder: Path, n: int, abnormal: bool, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = _smooth(rng)
        if abnormal:
            image = _with_checkerboard(image, rng)
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    """A micro MAE pretrained (200 steps, seeded) on smooth images only; a test set with checkerboards."""
    from mae_domains.config import load_config
    from mae_domains.engine.trainer import pretrain

    root = tmp_path_factory.mktemp("anomaly")
    _write(root / "pretrain", 200, False, seed=1)
    _write(root / "test" / "normal", 20, False, seed=2)
    _write(root / "test" / "abnormal", 20, True, seed=3)
    config = load_config(None, [
        "adapter=image", f"data.sources=[{root / 'pretrain'}]", "data.num_workers=0",
        "data.options={crop_scale: [0.9, 1.0], hflip: false}", "model.preset=micro", f"model.img_size={SIZE}",
        "model.patch_size=8", "model.in_chans=1", "model.decoder_embed_dim=32", "model.decoder_depth=1",
        "model.decoder_num_heads=4", "model.norm_pix_loss=true", "optim.base_lr=4e-3", "optim.warmup_steps=20",
        "engine.batch_size=32", "engine.max_steps=200", "engine.checkpoint_every=200", "engine.log_every=100",
        "engine.seed=0", "engine.threads=1", "engine.figure_every=0", "engine.device=cpu",
    ])
    pretrain(config, root / "run")
    return root


@pytest.mark.slow
def test_cli_anomaly_on_a_pretrained_micro_run(pretrained_run, capsys):
    root = pretrained_run
    out = root / "cli_out"
    assert main(["evaluate", "--run", str(root / "run"), "--protocol", "anomaly", "--test", str(root / "test"),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "auroc" in capsys.readouterr().out
    rows = [r for r in csv.DictReader((out / "results.csv").open()) if r["metric"] == "auroc"]
    assert float(rows[0]["value"]) > 0.75  # the untrained model of the same seed scores about 0.36
    per_image = list(csv.DictReader(next((out / "per_image").glob("anomaly__*.csv")).open()))
    assert len(per_image) == 40 and {r["label"] for r in per_image} == {"normal", "abnormal"}
    abnormal = [float(r["score"]) for r in per_image if r["label"] == "abnormal"]
    normal = [float(r["score"]) for r in per_image if r["label"] == "normal"]
    assert np.mean(abnormal) > np.mean(normal)


@pytest.mark.slow
def test_anomaly_from_a_label_csv_and_not_from_an_export(pretrained_run, tmp_path):
    root = pretrained_run
    listing = tmp_path / "screening.csv"
    with listing.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for kind in ("normal", "abnormal"):
            for p in sorted((root / "test" / kind).glob("*.png")):
                writer.writerow([p, kind])
    records = evaluate_checkpoint(root / "run", "anomaly", tmp_path / "out", test=[listing], device="cpu")
    summary = {r.metric: r for r in records}
    assert summary["auroc"].value > 0.75 and summary["auroc"].n_test == 40
    assert summary["auroc"].settings["masks"] == 8 and summary["auroc"].settings["mask_ratio"] is None

    from mae_domains.runs.export import export_run

    export_run(root / "run", tmp_path / "export")
    with pytest.raises(ValueError, match="decoder"):
        evaluate_checkpoint(tmp_path / "export", "anomaly", tmp_path / "out2", test=[listing], device="cpu")
