"""The shared schedule (MAE's warmup from 0, half-cycle cosine), linear scaling and parameter groups, as
the engine imports them."""

from __future__ import annotations

import math

import pytest
import torch

from mae_domains.models.embeddings.band_groups import BandGroupPatchEmbed
from mae_domains.models.embeddings.channel_shared import ChannelSharedPatchEmbed
from mae_domains.models.grid_mae import build_grid_mae
from mae_domains.optim import apply_lr, build_optimizer, effective_lr, layer_id, lr_at, param_groups

MICRO = dict(preset="micro", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)


def test_warmup_starts_at_zero_and_reaches_the_peak_at_its_end():
    peak, warmup, total = 1e-3, 10, 100
    lrs = [lr_at(s, peak, total, warmup) for s in range(warmup + 1)]
    assert lrs[0] == 0.0  # MAE: lr at step 0 is 0
    assert lrs[1] == pytest.approx(peak / warmup)
    assert lrs[warmup] == pytest.approx(peak)
    assert all(b - a == pytest.approx(peak / warmup) for a, b in zip(lrs, lrs[1:]))


def test_cosine_endpoints_and_midpoint():
    peak, warmup, total, floor = 1e-3, 10, 110, 1e-5
    assert lr_at(warmup + 50, peak, total, warmup, floor) == pytest.approx((peak + floor) / 2)
    assert lr_at(total, peak, total, warmup, floor) == pytest.approx(floor)
    assert lr_at(total + 50, peak, total, warmup, floor) == pytest.approx(floor)  # held after the end
    after = [lr_at(s, peak, total, warmup, floor) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(after, after[1:]))  # monotone decay
    quarter = lr_at(warmup + 25, peak, total, warmup, floor)
    assert quarter == pytest.approx(floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi / 4)))


def test_no_warmup_starts_at_peak():
    assert lr_at(0, 2e-4, 50, 0) == pytest.approx(2e-4)


def test_linear_scaling_rule():
    assert effective_lr(1.5e-4, None, 4096) == pytest.approx(1.5e-4 * 16)
    assert effective_lr(1.5e-4, 3e-3, 4096) == 3e-3  # an absolute lr wins


def test_decay_groups_of_a_grid_mae():
    torch.manual_seed(0)
    model = build_grid_mae(ChannelSharedPatchEmbed(64, 8, ["DNA", "RNA"]), **MICRO)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["lr_scale"] == no_decay["lr_scale"] == 1.0
    decayed, not_decayed = set(decay["param_names"]), set(no_decay["param_names"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | not_decayed == trainable and not decayed & not_decayed  # each exactly once
    # biases, norms, the CLS and mask tokens and the learned channel-code tables are not decayed
    assert {"encoder.cls_token", "decoder.mask_token", "encoder.embedding.proj.bias", "encoder.norm.weight"} <= not_decayed
    assert any(n.startswith("encoder.embedding.channel_tables.") for n in not_decayed)
    assert not any("channel_tables" in n for n in decayed)
    assert all(n.endswith(".weight") and "norm" not in n for n in decayed)
    assert {"encoder.embedding.proj.weight", "encoder.blocks.0.attn.qkv.weight", "decoder.embed.weight"} <= decayed


def test_layer_ids_of_grid_encoder_names():
    depth = 2
    assert layer_id("encoder.embedding.projs.1.weight", depth) == 0
    assert layer_id("embedding.channel_tables.64.table.weight", depth) == 0
    assert layer_id("encoder.cls_token", depth) == 0
    assert layer_id("encoder.patch_embed.proj.weight", depth) == 0  # plain ViT names too
    assert layer_id("encoder.blocks.0.attn.qkv.weight", depth) == 1
    assert layer_id("blocks.1.mlp.fc2.bias", depth) == 2
    assert layer_id("encoder.norm.weight", depth) == 3
    assert layer_id("head.weight", depth) == 3


def test_layer_decay_groups_of_a_band_group_encoder():
    torch.manual_seed(0)
    encoder = build_grid_mae(BandGroupPatchEmbed([[0, 1], [2, 3]], 64, 8), **MICRO).encoder
    groups = param_groups(encoder, 0.05, layer_decay=0.5, depth=2)
    by_name = {name: group for group in groups for name in group["param_names"]}
    # lr_scale = decay ** (depth + 1 - layer): 0.125, 0.25, 0.5, 1
    expected = {"cls_token": 0.125, "embedding.projs.0.weight": 0.125, "embedding.projs.1.bias": 0.125,
                "blocks.0.attn.qkv.weight": 0.25, "blocks.1.norm1.weight": 0.5, "norm.bias": 1.0}
    for name, scale in expected.items():
        assert by_name[name]["lr_scale"] == pytest.approx(scale), name
    assert [g["layer_id"] for g in groups] == sorted(g["layer_id"] for g in groups)
    assert set(by_name) == {n for n, _ in encoder.named_parameters()}
    assert by_name["cls_token"]["weight_decay"] == 0.0 and by_name["embedding.projs.0.weight"]["weight_decay"] == 0.05
    with pytest.raises(ValueError, match="depth"):
        param_groups(encoder, 0.05, layer_decay=0.5)


def test_optimizer_recipe_and_scaled_lr():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, 1e-3, 0.05, (0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert all("param_names" not in g for g in opt.param_groups)
    layered = build_optimizer(torch.nn.ModuleDict({"blocks": torch.nn.ModuleList([torch.nn.Linear(2, 2)])}),
                              1e-3, 0.05, layer_decay=0.5, depth=1)
    apply_lr(layered, 1e-3)
    assert sorted(g["lr"] for g in layered.param_groups) == [pytest.approx(5e-4)] * 2  # blocks.0 is layer 1 of 2
