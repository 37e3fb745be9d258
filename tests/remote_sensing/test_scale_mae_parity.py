"""remote_sensing.scale against Scale-MAE (bair-climate-initiative/scale-mae, ``mae/models_mae.py``
``forward_loss`` and ``main_pretrain.py``'s defaults), transcribed here: the loss on the same predictions,
target and mask (sum over bands per masked pixel; L2 or L1 high band; ``band_config`` residual grid), the
2x target (input 224, ``target_size`` 448: high band at 2x the input, low band at 1x) and the target read
from the file's finer pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mae_domains.config import load_config
from mae_domains.data.dataset import collate_items
from mae_domains.models.decoding.frequency_heads import FrequencyHeads
from mae_domains.registry import get_adapter
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster

RGB = ["B4", "B3", "B2"]


def scale_mae_forward_loss(imgs, pred_high, pred_low, mask, band_config, use_l1_loss, l1_loss_weight):
    """``MaskedAutoencoderViT.forward_loss`` of Scale-MAE, line by line."""
    dim1, dim2 = band_config
    if dim2 != 224:
        target_low = F.interpolate(imgs, pred_low.shape[-2:], mode="area")
    else:
        target_low = F.interpolate(F.interpolate(imgs, (dim2, dim2), mode="area"), pred_low.shape[-2:], mode="area")
    target_high = imgs - F.interpolate(F.interpolate(imgs, (dim1, dim1), mode="area"), pred_high.shape[-2:],
                                       mode="bilinear")
    n, l_low = mask.shape
    side = int(l_low ** 0.5)
    mask = mask.reshape(n, 1, side, side)
    mask_low = F.interpolate(mask, pred_low.shape[-2:])
    mask_high = F.interpolate(mask, pred_high.shape[-2:])
    loss_l2 = mask_low * (target_low - pred_low) ** 2
    loss_l2 = loss_l2.sum() / (mask_low.sum() + 1e-9)
    if use_l1_loss:
        loss_l1 = mask_high * torch.abs(target_high - pred_high) * l1_loss_weight
    else:
        loss_l1 = mask_high * (target_high - pred_high) ** 2
    loss_l1 = loss_l1.sum() / (mask_high.sum() + 1e-9)
    return loss_l1 + loss_l2


def training_batch(target: torch.Tensor, gsd: float = 10.0) -> dict:
    """A collated training batch read at 2x: the target pixels, as the loader hands them to the adapter."""
    n = target.shape[0]
    metas = [{"gsd": [gsd, gsd], "target_scale": 2, "band_names": RGB} for _ in range(n)]
    return {"image": target, "mask_seed": list(range(n)), "meta": metas}


@pytest.mark.parametrize("high_loss, use_l1, weight", [("l2", False, 1.0), ("l1", True, 0.5)])
def test_loss_at_the_2x_target_equals_scale_mae(high_loss, use_l1, weight):
    """Input 32 px (patch 8) and a 64 px target stand for 224 and 448; ``band_config`` [7, 56] is
    ``main_pretrain.py``'s default; the reference's loss is summed over the three bands per masked pixel."""
    adapter = make_adapter("scale", img_size=32, bands=RGB, target_scale=2, residual_size=[7, 7],
                           high_loss=high_loss, high_weight=weight)
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    target = torch.randn(2, 3, 64, 64)
    inputs = adapter.model_inputs(training_batch(target), torch.device("cpu"))
    out = model(**inputs)
    assert out.pred_high.shape == (2, 3, 64, 64) and out.pred_low.shape == (2, 3, 32, 32)  # 2x and 1x the input
    torch.testing.assert_close(inputs["images"].images, F.avg_pool2d(target, 2))  # the input: the target at 1x
    expected = scale_mae_forward_loss(target, out.pred_high, out.pred_low, out.mask, [7, 56], use_l1, weight)
    torch.testing.assert_close(out.loss, expected, atol=1e-6, rtol=1e-5)


def test_mean_reduction_is_the_band_sum_over_the_band_count():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 64, 64)
    losses = {}
    for reduction in ("band_sum", "mean"):
        adapter = make_adapter("scale", img_size=32, bands=RGB, target_scale=2, loss_reduction=reduction)
        torch.manual_seed(1)
        model = adapter.build_model(adapter.config.model, adapter.config.mask)
        losses[reduction] = model(**adapter.model_inputs(training_batch(target), torch.device("cpu"))).loss
    torch.testing.assert_close(losses["band_sum"], 3.0 * losses["mean"], atol=1e-6, rtol=1e-5)


def test_heads_at_the_papers_sizes():
    """Input 224, patch 16 (a 14 x 14 grid), target_size 448: high band 448 px, low band 224 px."""
    heads = FrequencyHeads(32, 3, patch_size=16, low_scale=0.5, hidden=32, target_scale=2)
    low, high = heads(torch.randn(1, 14 * 14, 32), (14, 14))
    assert high.shape == (1, 3, 448, 448) and low.shape == (1, 3, 224, 224)


def test_an_evaluation_batch_without_a_2x_target_is_scored_at_its_own_resolution():
    adapter = make_adapter("scale", img_size=32, bands=RGB, target_scale=2)
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    images = torch.randn(2, 3, 32, 32)
    batch = {"image": images, "mask_seed": [0, 1], "meta": [{"gsd": [10.0, 10.0]}] * 2}
    out = model(**adapter.model_inputs(batch, torch.device("cpu")))
    expected = scale_mae_forward_loss(images, F.interpolate(out.pred_high, (32, 32), mode="area"), out.pred_low,
                                      out.mask, [4, 56], False, 1.0)  # residual grid None = the 4 x 4 token grid
    torch.testing.assert_close(out.loss, expected, atol=1e-6, rtol=1e-5)
    recon, hidden = model.reconstruct_pixels(adapter.grid_batch(batch, torch.device("cpu")), out)
    assert recon.shape == hidden.shape == (2, 3, 32, 32)


def test_the_2x_target_is_read_from_the_files_finer_pixels(tmp_path):
    """A 5 m file read for a 10 m input (``target_gsd`` 10): the target is the file's own pixels in the chip's
    window, the input their 2 x 2 means, and the GSD code uses the input's 10 m."""
    data = np.random.default_rng(3).uniform(0, 1000, (3, 96, 96)).astype(np.float32)
    path = write_raster(tmp_path / "fine.tif", data, res=5.0, descriptions=RGB)
    adapter = make_adapter("scale", img_size=16, bands=RGB, target_scale=2, target_gsd=10.0, multiscale=False,
                           flips=False, chips_per_scene=1)
    ref = adapter.discover([path])[0]
    sample = adapter.transform(adapter.read_training(ref, 7), 7, True, None)
    assert sample.image.shape == (3, 32, 32) and sample.meta["target_scale"] == 2
    assert sample.meta["gsd"] == pytest.approx([10.0, 10.0]) and sample.meta["target_gsd"] == pytest.approx([5.0, 5.0])
    row, col, h, w = sample.meta["window"]
    assert (h, w) == (32, 32)
    np.testing.assert_array_equal(sample.image, data[:, row:row + 32, col:col + 32])  # native 5 m pixels, as stored
    item = {"image": torch.from_numpy(sample.image), "valid": torch.from_numpy(sample.valid), "mask_seed": 0,
            "meta": sample.meta}
    grid = adapter.grid_batch(collate_items([item]), torch.device("cpu"))
    blocks = data[:, row:row + 32, col:col + 32].reshape(3, 16, 2, 16, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(grid.images[0].numpy(), blocks, rtol=1e-6)
    torch.testing.assert_close(grid.target_images[0], torch.from_numpy(data[:, row:row + 32, col:col + 32]))
    assert grid.valid.shape == (1, 16, 16) and grid.target_valid.shape == (1, 32, 32)
    assert adapter.read(ref).image.shape[-2:] == (16, 16)  # evaluation reads: the input only


def test_nodata_in_the_target_invalidates_the_input_pixels_it_averages():
    adapter = make_adapter("scale", img_size=32, bands=RGB, target_scale=2)
    valid = torch.ones(1, 64, 64, dtype=torch.bool)
    valid[0, 0, 0] = False
    batch = {**training_batch(torch.randn(1, 3, 64, 64)), "valid": valid}
    grid = adapter.grid_batch(batch, torch.device("cpu"))
    assert not grid.valid[0, 0, 0] and grid.valid.sum() == 32 * 32 - 1 and torch.equal(grid.target_valid, valid)


def test_the_recipe_is_scale_maes_released_configuration():
    """``remote_sensing_scale_vit_large.yaml``: input 224, target 448 (target_scale 2), band_config [7, 56]
    (residual grid 7), L2 high band (``--use_l1_loss`` off), the loss summed over bands per masked pixel so
    that blr 1.5e-4 (``main_pretrain.py``'s) applies to the loss it was tuned on."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "configs" / "remote_sensing_scale_vit_large.yaml"
    config = load_config(recipe)
    options = config.data.options
    assert config.model.img_size * options["target_scale"] == 448
    assert options["residual_size"] == [7, 7] and options["high_loss"] == "l2"
    assert options["loss_reduction"] == "band_sum" and config.optim.base_lr == pytest.approx(1.5e-4)
    adapter = get_adapter("remote_sensing.scale", options)
    assert adapter.options["high_weight"] == 1.0


def test_the_training_figure_shows_the_2x_target_and_its_reconstruction(tmp_path):
    adapter = make_adapter("scale", img_size=32, bands=RGB, target_scale=2)
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    batch = {**training_batch(torch.randn(2, 3, 64, 64)), "valid": torch.ones(2, 64, 64, dtype=torch.bool)}
    with torch.no_grad():
        out = model(**adapter.model_inputs(batch, torch.device("cpu")))
    assert out.pred.shape == (2, out.query_ids.shape[1], 16 * 16 * 3)  # a token's patch at the target's resolution
    recon, hidden = model.reconstruct_pixels(adapter.grid_batch(batch, torch.device("cpu")), out)
    assert recon.shape == (2, 3, 64, 64)
    torch.testing.assert_close(recon[~hidden], batch["image"][~hidden])  # visible pixels are the target's
    path = adapter.render_reconstruction(model, batch, out, tmp_path / "figure.png")
    assert path.exists() and path.stat().st_size > 0
