"""FG-MAE feature targets: HOG against a plain loop computation, indices against their formulas on known
reflectances, token order for band groups and frames, one-line errors, and a training step per target."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mae_domains.grid import GridBatch
from mae_remote_sensing.feature_targets import FeatureTarget, hog_cells, spectral_indices, index_band_positions
from tests.remote_sensing.conftest import make_adapter


def plain_hog(image: np.ndarray, bins: int = 9, cell: int = 8, window: int = 16) -> np.ndarray:
    """FG-MAE's HOG of one band, written out with loops: (H, W) -> (bins, H/cell, W/cell)."""
    h, w = image.shape
    padded = np.pad(image.astype(np.float64), 1, mode="reflect")
    sobel = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    coords = np.arange(window) - (window - 1) / 2.0
    g = np.exp(-0.5 * (coords / (window // 2)) ** 2)
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    hist = np.zeros((bins, h // cell, w // cell))
    for r in range(h):
        for c in range(w):
            gx = gy = 0.0
            for i in range(3):
                for j in range(3):
                    gx += sobel[i][j] * padded[r + i, c + j]  # cross-correlation, as conv2d
                    gy += sobel[j][i] * padded[r + i, c + j]
            magnitude = math.sqrt(gx * gx + gy * gy) * kernel[r % window, c % window]
            b = math.floor(math.atan2(gx, gy) / math.pi * bins) % bins
            hist[b, r // cell, c // cell] += magnitude
    norm = np.sqrt((hist**2).sum(axis=0, keepdims=True))
    return hist / np.maximum(norm, 1e-12)


def test_hog_matches_a_direct_loop_computation():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:32]
    bands = np.stack([rng.normal(size=(16, 32)), np.sin(xx / 3.0) + 0.5 * yy, (xx > 12).astype(float)])
    got = hog_cells(torch.tensor(bands, dtype=torch.float32)[None], window=16)[0].numpy()
    assert got.shape == (3, 9, 2, 4)
    for band in range(3):
        np.testing.assert_allclose(got[band], plain_hog(bands[band]), rtol=1e-4, atol=1e-5)


def test_hog_of_a_vertical_edge_falls_in_one_orientation_bin():
    image = torch.zeros(1, 1, 16, 16)
    image[..., 8:] = 1.0  # a vertical edge: gx != 0, gy == 0 -> atan2(gx, 0) = -pi/2 -> bin floor(-4.5) % 9 = 4
    cells = hog_cells(image, window=0)[0, 0]
    assert torch.allclose(cells[:, :, 1], torch.tensor([0, 0, 0, 0, 1.0, 0, 0, 0, 0])[:, None].expand(9, 2))
    assert torch.all(cells[:, :, 0] == 0) or torch.allclose(cells[4, :, 0], torch.ones(2))


def test_indices_follow_their_formulas_on_known_reflectances():
    bands = ["B2", "B3", "B4", "B8", "B11"]
    values = {"B2": 0.05, "B3": 0.08, "B4": 0.04, "B8": 0.36, "B11": 0.18}
    images = torch.tensor([values[b] for b in bands]).reshape(1, 5, 1, 1).expand(1, 5, 2, 2).clone()
    images[0, :, 1, 1] = torch.tensor([0.1, 0.3, 0.2, 0.1, 0.25])  # water-like / built-up pixel
    valid = torch.ones_like(images)
    out, weight = spectral_indices(images, valid, index_band_positions(bands, ["NDVI", "NDWI", "NDBI"]))
    assert out[0, :, 0, 0].tolist() == pytest.approx([(0.36 - 0.04) / 0.40, (0.08 - 0.36) / 0.44, (0.18 - 0.36) / 0.54])
    assert out[0, :, 1, 1].tolist() == pytest.approx([(0.1 - 0.2) / 0.3, (0.3 - 0.1) / 0.4, (0.25 - 0.1) / 0.35])
    assert weight.min() == 1.0
    valid[0, 3, 0, 1] = 0  # NIR missing there: every index that reads NIR loses its weight
    _, weight = spectral_indices(images, valid, index_band_positions(bands, ["NDVI", "NDWI", "NDBI"]))
    assert weight[0, :, 0, 1].tolist() == [0.0, 0.0, 0.0]


def test_indices_undo_the_band_normalization_and_follow_token_order():
    adapter = make_adapter("multispectral", img_size=16, overrides=["model.norm_pix_loss=false"], target="indices",
                           bands=["B3", "B4", "B8", "B11"],
                           groups=[["B3", "B4"], ["B8", "B11"]])
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    raw = torch.rand(2, 4, 16, 16) * 0.4 + 0.05
    mean, std = torch.tensor([[0.1, 0.2, 0.3, 0.2]] * 2), torch.tensor([[0.05, 0.1, 0.2, 0.1]] * 2)
    normalized = (raw - mean[..., None, None]) / std[..., None, None]
    batch = GridBatch(normalized, meta={"band_mean": mean, "band_std": std})
    layout = model.embedding.layout(batch)
    target, weight = model.target(batch, model.embedding, layout)
    assert target.shape == (2, 2 * 2 * 2, 3 * 8 * 8) == weight.shape
    ndvi = (raw[:, 2] - raw[:, 1]) / (raw[:, 2] + raw[:, 1])
    # token (group 1, y 1, x 0): rows 8..15, columns 0..7; value (p, q, index) channel last; NDVI first
    token = 1 * 4 + 1 * 2 + 0
    got = target[:, token].reshape(2, 8, 8, 3)[..., 0]
    torch.testing.assert_close(got, ndvi[:, 8:16, 0:8], rtol=1e-4, atol=1e-5)
    # both groups at one place predict the same indices
    torch.testing.assert_close(target[:, 0], target[:, 4])


def test_hog_tokens_hold_their_band_groups_cells():
    adapter = make_adapter("multispectral", img_size=32, overrides=["model.patch_size=16", "model.norm_pix_loss=false"],
                           target="hog",
                           bands=["B2", "B3", "B4"], groups=[["B4", "B2"], ["B3"]])
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    images = torch.randn(1, 3, 32, 32)
    layout = model.embedding.layout(GridBatch(images))
    target, weight = model.target(GridBatch(images), model.embedding, layout)
    assert target.shape == (1, 2 * 2 * 2, 2 * 9 * 2 * 2)  # 2 slots x 9 bins x 2x2 cells
    cells = hog_cells(images, window=16)[0]  # (band, bin, 4, 4)
    token = 0 * 4 + 0 * 2 + 1  # group 0 (B4 then B2), y 0, x 1: cells rows 0-1, columns 2-3
    got = target[0, token].reshape(2, 9, 2, 2)
    torch.testing.assert_close(got[0], cells[2, :, 0:2, 2:4])
    torch.testing.assert_close(got[1], cells[0, :, 0:2, 2:4])
    second = target[0, 4 + 1].reshape(2, 9, 2, 2)  # group 1 has one band: its second slot is padding
    torch.testing.assert_close(second[0], cells[1, :, 0:2, 2:4])
    assert weight[0, 4 + 1].reshape(2, -1)[1].sum() == 0 and weight[0, 4 + 1].reshape(2, -1)[0].min() > 0


def test_nodata_cells_carry_no_weight():
    target = FeatureTarget(("hog",), ["B2"], 8, hog_window=0)
    from mae_domains.models.embeddings.patch2d import PatchEmbed2D

    embedding = PatchEmbed2D(1, 32, 8)
    valid = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    valid[..., 3, 12] = False  # one pixel in the top-right cell
    batch = GridBatch(torch.randn(1, 1, 16, 16), valid=valid)
    _, weight = target(batch, embedding, embedding.layout(batch))
    assert weight[0].sum(-1).tolist() == [9.0, 0.0, 9.0, 9.0]


def test_missing_band_and_sar_are_one_line_errors():
    with pytest.raises(ValueError, match="NDBI needs the SWIR1 band B11") as err:
        make_adapter("multispectral", target="indices", bands=["B2", "B3", "B4", "B8"], groups=[["B2", "B3", "B4", "B8"]])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="SAR bands"):
        make_adapter("multispectral", target="hog+indices", bands=["VV", "VH"], groups=[["VV", "VH"]])
    sar = make_adapter("multispectral", target="hog", bands=["VV", "VH"], groups=[["VV", "VH"]])
    assert sar.build_model(sar.config.model, sar.config.mask).target.parts == ("hog",)
    with pytest.raises(ValueError, match="data.options.target must be one of"):
        make_adapter("multispectral", target="edges")


def _training_step(adapter, samples) -> float:
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    batch = {"image": torch.from_numpy(np.stack([s.image for s in samples])),
             "valid": torch.from_numpy(np.stack([s.valid for s in samples])),
             "mask_seed": torch.tensor([3, 4]), "meta": [s.meta for s in samples]}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(**adapter.model_inputs(batch, torch.device("cpu")))
    assert out.pred.shape == out.target.shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    return float(out.loss.detach())


@pytest.mark.parametrize("target", ["pixels", "hog", "indices", "hog+indices"])
@pytest.mark.parametrize("name", ["multispectral", "temporal"])
def test_a_training_step_with_each_target(name, target):
    adapter = make_adapter(name, img_size=16, target=target, **({"frames": 2} if name == "temporal" else {}))
    stats = None
    if name == "temporal":
        samples = [adapter.synthetic_sample(s) for s in (0, 1)]
        samples = [adapter.transform(s, k, True, stats) for k, s in enumerate(samples)]
    else:
        samples = [adapter.transform(adapter.synthetic_sample(s), s, True, stats) for s in (0, 1)]
    assert _training_step(adapter, samples) > 0


def test_normalization_statistics_travel_to_the_target(tmp_path):
    from mae_domains.data.sample import NormStats

    adapter = make_adapter("multispectral", img_size=16, target="indices")
    n = len(adapter.bands)
    stats = NormStats(mean=[0.1] * n, std=[0.05] * n)
    samples = [adapter.transform(adapter.synthetic_sample(s), s, False, stats) for s in (0, 1)]
    batch = {"image": torch.from_numpy(np.stack([s.image for s in samples])), "meta": [s.meta for s in samples]}
    meta = adapter.batch_meta(batch, torch.device("cpu"))
    assert torch.allclose(meta["band_std"], torch.full((2, n), 0.05))
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    path = adapter.render_reconstruction(model, {**batch, "mask_seed": torch.tensor([1, 2])},
                                         model(**adapter.model_inputs({**batch, "mask_seed": torch.tensor([1, 2])},
                                                                      torch.device("cpu"))), tmp_path / "f.png")
    assert path.exists() and path.stat().st_size > 0


def test_an_adapter_with_its_own_targets_refuses_feature_targets():
    with pytest.raises(ValueError, match="reconstructs its own targets"):
        make_adapter("scale", target="hog")


@pytest.mark.slow
def test_pretraining_run_with_hog_and_indices(tmp_path):
    """The engine end to end: statistics reach the index target, a figure of feature maps is drawn."""
    from mae_domains.config import load_config
    from mae_domains.engine import pretrain
    from tests.remote_sensing.conftest import MICRO
    from tests.remote_sensing.rasters import write_raster
    from mae_remote_sensing.synthetic import synthetic_scene

    bands = ["B2", "B3", "B4", "B8", "B11", "B12"]
    for i in range(4):
        image, _ = synthetic_scene(i, bands, 48, 48)
        write_raster(tmp_path / "archive" / f"scene_{i}.tif", (image * 10000).astype(np.uint16), descriptions=bands)
    config = load_config(None, ["adapter=remote_sensing.multispectral", "model.img_size=32", *MICRO,
                                "engine.batch_size=4", "engine.max_steps=2", "engine.figure_every=2",
                                "engine.device=cpu", "data.num_workers=0", "data.stats_samples=8"],
                         base={"data": {"sources": [str(tmp_path / "archive")],
                                        "options": {"bands": bands, "groups": [bands[:4], bands[4:]],
                                                    "chips_per_scene": 1, "target": "hog+indices"}}})
    result = pretrain(config, tmp_path / "run")
    assert result.steps == 2 and np.isfinite(result.final_loss)
    assert list((tmp_path / "run" / "figures").glob("*.png"))
