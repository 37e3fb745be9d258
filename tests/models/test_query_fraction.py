"""The decoded-query fraction (CrossMAE's ``kept_mask_ratio``): set from a run config for every adapter,
the count computed as the reference does (``models_cross.py`` ``random_masking``), and the learning
rate scaled by ``kept_mask_ratio / mask_ratio`` (``main_pretrain.py``) unless turned off."""

from __future__ import annotations

import logging

import pytest
import torch

from mae_domains.config import load_config
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import build_grid_mae
from mae_domains.registry import discover_adapters, get_adapter
from tests.engine.conftest import make_config, png_archive  # noqa: F401  (fixture)

MICRO = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
         "model.decoder_depth=1", "model.decoder_num_heads=4"]


def crossmae_decoded(n: int, mask_ratio: float, kept_mask_ratio: float) -> int:
    """``models_cross.py``: ``len_keep = int(L * (1 - mask_ratio))``, ``len_masked = int(L * (mask_ratio -
    kept_mask_ratio))``; the loss mask is 1 for the last ``L - len_keep - len_masked`` shuffled tokens."""
    len_keep = int(n * (1 - mask_ratio))
    len_masked = int(n * (mask_ratio - kept_mask_ratio))
    return n - len_keep - len_masked


@pytest.mark.parametrize("n, ratio, query", [
    (196, 0.75, 0.25),  # ViT-B/16 at 224 px: 49 of 147 masked tokens
    (196, 0.75, 0.5),
    (16, 0.9, 0.25),  # int(10.4): 5, where round(0.25 * 16) would give 4
    (10, 0.75, 0.3),  # int(4.5): 4, where round(0.3 * 10) would give 3
    (49, 0.75, 0.1),
    (50, 0.6, 0.6),  # kept_mask_ratio = mask_ratio: every masked token
])
def test_query_count_follows_crossmae(n, ratio, query):
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), preset="micro", decoder="cross", query=query, mask_ratio=ratio)
    masked = n - int(n * (1 - ratio))
    assert model.query_count(n, masked, ratio) == crossmae_decoded(n, ratio, query)


def test_query_count_through_the_forward_and_its_bounds():
    model = build_grid_mae(PatchEmbed2D(3, 64, 4), preset="micro", decoder="cross", query=0.3, mask_ratio=0.75)
    out = model(torch.randn(2, 3, 20, 8), mask_seeds=[1, 2])  # 5 x 2 = 10 tokens
    assert out.query_ids.shape[1] == crossmae_decoded(10, 0.75, 0.3) == 4
    assert (torch.gather(out.mask, 1, out.query_ids) == 1).all()  # decoded tokens are masked ones
    assert model.query_count(10, 8, 0.2) == 8  # a fraction above the mask ratio decodes every masked token
    assert model.query_count(100, 75, 0.75 + 1e-9) >= 1


def test_the_lr_factor_is_kept_over_mask_ratio():
    build = lambda q, r=0.75: build_grid_mae(PatchEmbed2D(3, 64, 8), preset="micro", decoder="cross", query=q,
                                             mask_ratio=r)
    assert build(0.25).query_lr_factor() == pytest.approx(0.25 / 0.75)
    assert build(0.5, 0.9).query_lr_factor() == pytest.approx(0.5 / 0.9)
    assert build("masked").query_lr_factor() == 1.0 and build("all").query_lr_factor() == 1.0
    assert build(0.9).query_lr_factor() == 1.0  # more than the masked tokens is never decoded


# Adapters whose method decodes every position: the deblurring MAE scores all tokens (query "all");
# Scale-MAE's frequency decoder reconstructs the whole image with a self-attention decoder.
DENSE_DECODING = {"medical.ultrasound", "remote_sensing.scale"}


@pytest.mark.parametrize("name", sorted(discover_adapters()))
def test_every_adapter_takes_the_query_fraction_from_the_run_config(name):
    decoder = "self" if name == "remote_sensing.scale" else "cross"
    config = load_config(None, [f"adapter={name}", *MICRO, f"model.decoder={decoder}", "model.query=0.25"])
    adapter = get_adapter(name, config.data.options).bind(config)
    model = adapter.build_model(config.model, config.mask)
    if name == "medical.ultrasound":
        assert model.query == "all"
    elif name not in DENSE_DECODING:
        assert model.query == 0.25 and model.decoder.uses_feature_maps


def first_lr(run_dir):
    return float(read_csv(run_dir / "metrics.csv")[0]["lr"])


def test_the_trainer_scales_the_lr_by_the_decoded_fraction(png_archive, tmp_path, caplog):  # noqa: F811
    common = ["engine.batch_size=4", "engine.max_steps=1", "optim.base_lr=1e-3", "data.num_workers=0",
              "engine.log_every=1", "model.decoder=cross", "model.query=0.25", "mask.ratio=0.75"]
    peak = 1e-3 * 4 / 256
    with caplog.at_level(logging.INFO, logger="mae_domains.engine"):
        pretrain(make_config(png_archive, *common), tmp_path / "scaled")
    assert first_lr(tmp_path / "scaled") == pytest.approx(peak * 0.25 / 0.75, rel=1e-6)
    assert any("kept_mask_ratio / mask_ratio" in r.getMessage() for r in caplog.records)
    pretrain(make_config(png_archive, *common, "optim.query_lr_scale=false"), tmp_path / "off")
    assert first_lr(tmp_path / "off") == pytest.approx(peak, rel=1e-6)
    pretrain(make_config(png_archive, *common, "optim.lr=0.01"), tmp_path / "absolute")  # an absolute lr is as given
    assert first_lr(tmp_path / "absolute") == pytest.approx(0.01, rel=1e-6)
