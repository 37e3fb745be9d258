"""``precision: auto`` resolution (capability mocked both ways), the fp32 islands under bf16 autocast, and a
short CPU bf16 training run for correctness."""

from __future__ import annotations

import logging

import pytest
import torch

import mae_domains.device as device_module
from mae_domains.device import autocast, select_precision
from mae_domains.optim import build_optimizer
from mae_domains.grid.batch import as_grid_batch
from mae_domains.models.attention import attention, matmul_attention, prefer_matmul_attention
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import build_grid_mae

CPU = torch.device("cpu")
MICRO = dict(preset="micro", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4, norm_pix_loss=True)


def mock_cpu(monkeypatch, amx: bool, avx512_bf16: bool, onednn: bool = True) -> None:
    flags = {"_is_amx_tile_supported": amx, "_is_avx512_bf16_supported": avx512_bf16}
    monkeypatch.setattr(device_module, "_cpu_flag", lambda name: flags[name])
    monkeypatch.setattr(device_module, "_onednn_bf16", lambda: onednn)


@pytest.mark.parametrize("amx,avx512_bf16", [(True, True), (True, False), (False, True)])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(monkeypatch, amx, avx512_bf16):
    mock_cpu(monkeypatch, amx, avx512_bf16)
    precision = select_precision(CPU, "auto", cpu_bf16=True)
    assert precision.dtype is torch.bfloat16 and not precision.use_grad_scaler
    assert "native bf16" in precision.reason and ("AMX" in precision.reason) == amx


def test_auto_is_fp32_without_native_bf16(monkeypatch):
    mock_cpu(monkeypatch, False, False)
    precision = select_precision(CPU, "auto", cpu_bf16=True)
    assert precision.dtype is None and precision.name == "fp32" and "no native bf16" in precision.reason
    # AMX in the CPU but no oneDNN bf16 kernels in the build: still fp32
    mock_cpu(monkeypatch, True, True, onednn=False)
    assert select_precision(CPU, "auto", cpu_bf16=True).dtype is None


def test_explicit_requests_and_the_evaluation_default(monkeypatch, caplog):
    mock_cpu(monkeypatch, True, True)
    assert select_precision(CPU, "fp32", cpu_bf16=True).dtype is None
    assert select_precision(CPU, "auto").dtype is None  # evaluation keeps fp32 on CPU
    mock_cpu(monkeypatch, False, False)
    with caplog.at_level(logging.WARNING, logger="mae_domains.device"):
        assert select_precision(CPU, "bf16").dtype is torch.bfloat16  # honoured, emulated
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        select_precision(CPU, "fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        select_precision(CPU, "fp8")


@pytest.mark.parametrize("bf16_gpu", [True, False])
def test_auto_on_gpus_with_and_without_bf16(monkeypatch, bf16_gpu):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    precision = select_precision(torch.device("cuda"), "auto")
    assert precision.dtype is (torch.bfloat16 if bf16_gpu else torch.float16)
    assert precision.use_grad_scaler is (not bf16_gpu)


def test_trainer_resolves_auto_from_the_capability(monkeypatch, tmp_path):
    from mae_domains.config import load_config
    from mae_domains.engine.trainer import Trainer

    config = load_config(None, ["model.preset=micro", "engine.device=cpu"])
    for native, name in ((True, "bf16"), (False, "fp32")):
        mock_cpu(monkeypatch, native, native)
        assert Trainer(config, tmp_path / name).precision.name == name


def smooth_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    freq = torch.rand(count, 3, 2, 1, 1, generator=gen) * 6
    phase = torch.rand(count, 3, 1, 1, generator=gen) * 6.28
    return torch.sin(freq[:, :, 0] * xx + freq[:, :, 1] * yy + phase)


def test_statistics_targets_codes_and_loss_stay_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO)
    images = smooth_images(4)
    with autocast(CPU, select_precision(CPU, "bf16")):
        out = model(images, mask_seeds=[0, 1, 2, 3])
        codes = model.embedding.codes(as_grid_batch(images), out.layout, 64)
    assert out.pred.dtype == torch.bfloat16  # the network itself runs in bf16
    assert out.loss.dtype == out.target.dtype == codes.dtype == torch.float32
    # the norm_pix target equals the fp32 computation exactly (statistics are not taken in bf16)
    reference = model.target(as_grid_batch(images), model.embedding, out.layout)[0]
    torch.testing.assert_close(out.target, torch.gather(reference, 1, out.query_ids.unsqueeze(-1).expand_as(out.target)),
                               rtol=0, atol=0)


def test_matmul_attention_matches_sdpa_and_is_used_for_cpu_bf16():
    q, k, v = (torch.randn(2, 4, 9, 16) for _ in range(3))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(matmul_attention(q, k, v), expected, atol=1e-5, rtol=1e-5)
    low = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, atol=3e-2, rtol=3e-2)
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO)
    assert prefer_matmul_attention(model) == 3  # two encoder blocks and one decoder block
    assert prefer_matmul_attention(model, enabled=False) == 3


def train(precision: str, steps: int = 16) -> list[float]:
    torch.manual_seed(0)
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO)
    if precision == "bf16":
        prefer_matmul_attention(model)
    optimizer = build_optimizer(model, 2e-3, 0.05, (0.9, 0.95))
    images = smooth_images(8)
    losses = []
    for step in range(steps):
        with autocast(CPU, select_precision(CPU, precision)):
            loss = model(images, mask_seeds=[step * 8 + i for i in range(8)]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_short_bf16_training_is_finite_falls_and_follows_fp32():
    bf16, fp32 = train("bf16"), train("fp32")
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert sum(bf16[-4:]) < 0.9 * sum(bf16[:4])  # the loss falls
    assert bf16[0] == pytest.approx(fp32[0], rel=0.02)  # same weights and masks: the same loss to bf16 rounding
    assert sum(bf16[-4:]) == pytest.approx(sum(fp32[-4:]), rel=0.1)
