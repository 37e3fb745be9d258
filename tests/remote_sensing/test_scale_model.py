"""remote_sensing.scale model: the GSD-scaled code equals Scale-MAE's formula; frequency targets and
masked-only losses equal a direct computation; any band count; the adapter conforms at every preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_domains.models.decoding.frequency_heads import (
    FrequencyHeads, combine_frequencies, frequency_loss, high_pass_target, low_pass_target,
)
from mae_domains.testing.conformance import check_adapter
from tests.remote_sensing.conftest import make_adapter


# ----- Scale-MAE's position code, written out from the reference (util/pos_embed.py), fp32 ----------------
def scale_mae_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(dim // 2, dtype=torch.float32)
    omega /= dim / 2.0
    omega = 1.0 / 10000**omega
    out = torch.einsum("m,d->md", pos.reshape(-1), omega)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def scale_mae_code(dim: int, grid_size: int, res: torch.Tensor) -> torch.Tensor:
    """``get_2d_sincos_pos_embed_with_resolution`` without the CLS row: ``(n, grid_size**2, dim)``."""
    grid_h = torch.arange(grid_size, dtype=torch.float32)
    grid_w = torch.arange(grid_size, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(grid_w, grid_h, indexing="xy"), dim=0)
    grid = torch.einsum("chw,n->cnhw", grid, res.float())
    _, n, h, w = grid.shape
    emb = torch.cat([scale_mae_1d(dim // 2, grid[0]), scale_mae_1d(dim // 2, grid[1])], dim=1)
    return emb.reshape(n, h * w, dim)


def batch_of(adapter, gsds):
    samples = [adapter.transform(adapter.synthetic_sample(i), 0, False, None) for i in range(len(gsds))]
    for s, g in zip(samples, gsds):
        s.meta["gsd"] = [g, g]
    return {"image": torch.stack([torch.from_numpy(s.image) for s in samples]), "mask_seed": list(range(len(gsds))),
            "meta": [s.meta for s in samples], "valid": torch.stack([torch.from_numpy(s.valid) for s in samples])}


@pytest.mark.parametrize("reference", [10.0, 2.5])
def test_scaled_code_equals_the_scale_mae_formula(reference):
    adapter = make_adapter("scale", img_size=64, reference_gsd=reference)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    gsds = [10.0, 20.0, 5.0, 0.3]
    batch = adapter.grid_batch(batch_of(adapter, gsds), torch.device("cpu"))
    embedding = model.embedding
    layout = embedding.layout(batch)
    grid_size = 64 // adapter.config.model.patch_size
    res = torch.tensor(gsds) / reference
    for width in (embedding.embed_dim, model.decoder.decoder_embed_dim):
        ours = embedding.codes(batch, layout, width)
        assert ours.dtype == torch.float32 and ours.shape == (4, grid_size**2, width)
        torch.testing.assert_close(ours, scale_mae_code(width, grid_size, res), atol=2e-5, rtol=0)
    # at the reference GSD the code is MAE's unscaled table
    same = embedding.codes(adapter.grid_batch(batch_of(adapter, [reference]), torch.device("cpu")), layout, 64)
    torch.testing.assert_close(same[0], scale_mae_code(64, grid_size, torch.ones(1))[0], atol=1e-6, rtol=0)


# ----- frequency targets, against numpy -----------------------------------------------------------------
def block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def bilinear_up(x: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel-centre bilinear upsampling (torch ``align_corners=False``), edges clamped."""
    n = x.shape[-1]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    t = src - i0
    rows = x[..., i0, :] * (1 - t)[:, None] + x[..., i1, :] * t[:, None]
    return rows[..., i0] * (1 - t) + rows[..., i1] * t


def test_targets_equal_direct_computation():
    x = np.random.default_rng(0).normal(size=(2, 5, 16, 16)).astype(np.float32)
    low = low_pass_target(torch.from_numpy(x), (8, 8)).numpy()
    np.testing.assert_allclose(low, block_mean(x, 2), atol=1e-6)
    high = high_pass_target(torch.from_numpy(x), (4, 4)).numpy()
    np.testing.assert_allclose(high, x - bilinear_up(block_mean(x, 4), 16), atol=1e-5)
    # a constant image has no high frequencies
    flat = high_pass_target(torch.full((1, 2, 16, 16), 3.0), (4, 4))
    assert torch.allclose(flat, torch.zeros_like(flat))


def test_losses_count_masked_valid_pixels_only():
    rng = np.random.default_rng(1)
    b, c, size, grid = 2, 5, 16, 4
    x = rng.normal(size=(b, c, size, size)).astype(np.float32)
    pred_low = rng.normal(size=(b, c, 8, 8)).astype(np.float32)
    pred_high = rng.normal(size=(b, c, size, size)).astype(np.float32)
    mask = (rng.uniform(size=(b, grid * grid)) < 0.75).astype(np.float32)
    valid = np.ones((b, 1, size, size), np.float32)
    valid[0, :, :3, :5] = 0
    parts = frequency_loss(torch.from_numpy(pred_low), torch.from_numpy(pred_high), torch.from_numpy(x),
                           torch.from_numpy(mask), (grid, grid), torch.from_numpy(valid), (grid, grid), high_weight=0.5)
    token = mask.reshape(b, 1, grid, grid)
    m_low = np.kron(token, np.ones((2, 2))) * (block_mean(valid, 2) == 1)
    m_high = np.kron(token, np.ones((4, 4))) * valid
    t_low, t_high = block_mean(x, 2), x - bilinear_up(block_mean(x, 4), size)
    l2 = ((pred_low - t_low) ** 2 * m_low).sum() / (m_low.sum() * c)
    l1 = (np.abs(pred_high - t_high) * m_high).sum() / (m_high.sum() * c)
    assert parts.low.item() == pytest.approx(l2, rel=1e-5)
    assert parts.high.item() == pytest.approx(l1, rel=1e-5)
    assert parts.total.item() == pytest.approx(l2 + 0.5 * l1, rel=1e-5)
    # predictions at visible pixels do not matter
    visible = np.kron(1 - token, np.ones((4, 4))).astype(bool).repeat(c, axis=1)
    changed = pred_high.copy()
    changed[visible] += 100.0
    again = frequency_loss(torch.from_numpy(pred_low), torch.from_numpy(changed), torch.from_numpy(x),
                           torch.from_numpy(mask), (grid, grid), torch.from_numpy(valid), (grid, grid), 0.5)
    assert again.total.item() == pytest.approx(parts.total.item(), rel=1e-6)


@pytest.mark.parametrize("bands", [["B4", "B3", "B2"], ["B2", "B3", "B4", "B8", "B11"], ["B8"]])
def test_model_loss_is_the_frequency_loss_for_any_band_count(bands):
    adapter = make_adapter("scale", img_size=32, bands=bands)
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    inputs = adapter.model_inputs(batch_of(adapter, [10.0, 20.0]), torch.device("cpu"))
    out = model(**inputs)
    c = len(bands)
    assert out.pred_high.shape == (2, c, 32, 32) and out.pred_low.shape == (2, c, 16, 16)
    images, valid = inputs["images"].images, inputs["images"].valid
    direct = frequency_loss(out.pred_low, out.pred_high, images, out.mask, (4, 4),
                            valid.float().unsqueeze(1).expand_as(images), (4, 4), 1.0, "band_sum", "l2")
    assert out.loss.item() == pytest.approx(direct.total.item(), rel=1e-6)
    combined = combine_frequencies(out.pred_low, out.pred_high, (4, 4))
    assert out.pred.shape == (2, out.query_ids.shape[1], 8 * 8 * c) and torch.isfinite(combined).all()
    out.loss.backward()
    assert model.head.low.out.weight.grad.abs().sum() > 0 and model.head.high.out.weight.grad.abs().sum() > 0


def test_heads_upsample_to_their_own_scales():
    heads = FrequencyHeads(32, 4, patch_size=16, low_scale=0.25, hidden=32)
    low, high = heads(torch.randn(2, 9, 32), (3, 3))
    assert low.shape == (2, 4, 12, 12) and high.shape == (2, 4, 48, 48)
    with pytest.raises(ValueError, match="whole factor"):
        FrequencyHeads(32, 4, patch_size=8, low_scale=0.3)


# ----- the adapter ----------------------------------------------------------------------------------------
def test_conformance():
    report = check_adapter("remote_sensing.scale")
    assert report.passed, report.render()


@pytest.mark.parametrize("preset", ["micro", "tiny", "small", "base", "large", "huge"])
def test_every_preset_builds_scaled_codes(preset):
    from mae_domains.config import ModelConfig
    from mae_domains.models.presets import get_preset

    adapter = make_adapter("scale", img_size=32)
    width = get_preset(preset).embed_dim
    model = ModelConfig(preset=preset, img_size=32, patch_size=16, decoder_embed_dim=64, decoder_depth=1,
                        decoder_num_heads=4)
    embedding = adapter.build_embedding(model)
    grid_batch = adapter.grid_batch(batch_of(adapter, [10.0, 30.0]), torch.device("cpu"))
    codes = embedding.codes(grid_batch, embedding.layout(grid_batch), width)
    assert codes.shape == (2, 4, width) and torch.isfinite(codes).all()
    assert not torch.allclose(codes[0], codes[1])  # the GSD changes the code


def test_bad_options_say_what_to_set():
    with pytest.raises(ValueError, match="crop_area"):
        make_adapter("scale", crop_area=[0.0, 1.0])
    with pytest.raises(ValueError, match="reference_gsd"):
        make_adapter("scale", reference_gsd=0)
    with pytest.raises(ValueError, match="target: pixels"):  # its targets are the frequency images
        make_adapter("scale", target="hog")
    adapter = make_adapter("scale", overrides=["model.decoder=cross"])
    with pytest.raises(ValueError, match="model.decoder=self"):
        adapter.build_model(adapter.config.model, adapter.config.mask)
    with pytest.raises(ValueError, match=r"target_scale must be a whole number >= 1 .*got 1.5"):
        make_adapter("scale", target_scale=1.5)
    with pytest.raises(ValueError, match=r"high_loss must be one of \['l2', 'l1'\], got 'huber'"):
        make_adapter("scale", high_loss="huber")
    with pytest.raises(ValueError, match=r"loss_reduction must be one of \['band_sum', 'mean'\], got 'sum'"):
        make_adapter("scale", loss_reduction="sum")
