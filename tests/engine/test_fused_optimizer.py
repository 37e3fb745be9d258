"""The engine's AdamW uses the fused kernel where it exists (same update as the unfused loop, exact on
resume) and falls back to it otherwise; ``engine.compile`` falls back to eager when compilation fails."""

from __future__ import annotations

import copy
import logging

import torch

import mae_domains.optim as shared_optim
from mae_domains.engine.compilation import compile_model
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import build_grid_mae
from mae_domains.optim import build_optimizer

MICRO = dict(preset="micro", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)


def micro_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO)


def fill_grads(model: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def test_cpu_optimizer_is_fused_and_matches_the_unfused_update():
    fused_model, loop_model = micro_model(), micro_model()
    fused = build_optimizer(fused_model, 1e-3, 0.05, (0.9, 0.95))
    loop = build_optimizer(loop_model, 1e-3, 0.05, (0.9, 0.95), fused=False)
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    for step in range(3):
        fill_grads(fused_model, step)
        fill_grads(loop_model, step)
        fused.step()
        loop.step()
    for (name, a), b in zip(fused_model.named_parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    # decoupled weight decay only on the decayed group (biases untouched by decay)
    assert [g["weight_decay"] for g in fused.param_groups] == [0.05, 0.0]


def test_fused_state_resumes_exactly():
    model = micro_model()
    opt = build_optimizer(model, 1e-3, 0.05, (0.9, 0.95))
    for step in range(2):
        fill_grads(model, step)
        opt.step()
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    fill_grads(model, 2)
    opt.step()
    resumed = micro_model()
    resumed.load_state_dict(saved_model)
    resumed_opt = build_optimizer(resumed, 1e-3, 0.05, (0.9, 0.95))
    resumed_opt.load_state_dict(saved_opt)
    fill_grads(resumed, 2)
    resumed_opt.step()
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_falls_back_when_the_fused_kernel_is_refused(monkeypatch):
    real = torch.optim.AdamW

    def refusing(*args, **kwargs):
        if kwargs.get("fused"):
            raise RuntimeError("fused=True requires all the params to be floating point Tensors of supported devices")
        return real(*args, **kwargs)

    monkeypatch.setattr(shared_optim.torch.optim, "AdamW", refusing)
    opt = build_optimizer(micro_model(), 1e-3, 0.05)
    assert not opt.defaults["fused"] and opt.defaults["foreach"]


def test_compile_falls_back_to_eager_when_unavailable(monkeypatch, caplog):
    model = micro_model()

    def unavailable(self, *args, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch.nn.Module, "compile", unavailable)
    with caplog.at_level(logging.WARNING, logger="mae_domains.engine"):
        assert compile_model(model) is False
    assert "runs eagerly" in caplog.text
    images = torch.randn(2, 3, 16, 16)
    assert torch.isfinite(model(images, mask_seeds=[0, 1]).loss)


def test_compile_setting_is_a_config_key():
    from mae_domains.config import load_config

    assert load_config(None, ["engine.compile=true"]).engine.compile is True
    assert load_config(None, []).engine.compile is False
