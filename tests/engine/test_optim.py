"""Learning-rate schedule (warmup, half-cycle cosine, linear scaling) and weight-decay groups."""

from __future__ import annotations

import math

import pytest
import torch

from mae_domains.engine.optim import build_optimizer, effective_lr, lr_at, param_groups
from mae_domains.models import build_mae


def test_warmup_is_linear_and_reaches_peak():
    peak, warmup, total = 1e-3, 10, 100
    lrs = [lr_at(s, peak, total, warmup) for s in range(warmup)]
    assert lrs[0] == pytest.approx(peak / warmup)
    assert lrs[-1] == pytest.approx(peak)
    assert all(b - a == pytest.approx(peak / warmup) for a, b in zip(lrs, lrs[1:]))


def test_cosine_endpoints_and_midpoint():
    peak, warmup, total, floor = 1e-3, 10, 110, 1e-5
    assert lr_at(warmup, peak, total, warmup, floor) == pytest.approx(peak)
    assert lr_at(warmup + 50, peak, total, warmup, floor) == pytest.approx((peak + floor) / 2)
    assert lr_at(total, peak, total, warmup, floor) == pytest.approx(floor)
    assert lr_at(total + 50, peak, total, warmup, floor) == pytest.approx(floor)  # clamped after the end
    after = [lr_at(s, peak, total, warmup, floor) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(after, after[1:]))  # monotone decay
    quarter = lr_at(warmup + 25, peak, total, warmup, floor)
    assert quarter == pytest.approx(floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi / 4)))


def test_no_warmup_starts_at_peak():
    assert lr_at(0, 2e-4, 50, 0) == pytest.approx(2e-4)


def test_linear_scaling_rule():
    assert effective_lr(1.5e-4, None, 4096) == pytest.approx(1.5e-4 * 16)
    assert effective_lr(1.5e-4, 3e-3, 4096) == 3e-3  # an absolute lr wins


def test_decay_groups():
    model = build_mae("micro", img_size=32, patch_size=8, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert decayed | not_decayed == trainable and not decayed & not_decayed  # each exactly once
    for name in not_decayed:  # biases, norms, tokens
        assert name.endswith((".bias", "cls_token", "mask_token", "pos_embed")) or ".norm" in name or "norm" in name, name
    assert "encoder.cls_token" in not_decayed and "decoder.mask_token" in not_decayed
    assert all(name.endswith(".weight") and "norm" not in name for name in decayed)
    assert {"encoder.patch_embed.proj.weight", "encoder.blocks.0.attn.qkv.weight", "decoder.pred.weight"} <= decayed
    # the fixed sin-cos tables are frozen, so they are in no group at all
    assert "encoder.pos_embed" not in trainable


def test_optimizer_recipe():
    model = torch.nn.Linear(4, 4)
    opt = build_optimizer(model, 1e-3, 0.05, (0.9, 0.95))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
