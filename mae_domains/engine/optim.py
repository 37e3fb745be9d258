"""The engine's optimizer: AdamW over the shared parameter groups (:mod:`mae_domains.optim`), with the
fused single-kernel update where this torch build has one for the device.

An unfused AdamW runs about ten elementwise passes per parameter tensor (``lerp_``, ``mul_``,
``addcmul_``, ``sqrt``, ``div_``, ``addcdiv_``, ...); on a CPU pretraining ViT-B that is a tenth of the
step. ``torch.optim.AdamW(fused=True)`` does one pass per tensor on CPU and CUDA. Its update is the same
AdamW (decoupled weight decay, bias correction); it rounds slightly differently from the unfused loop, so
a run keeps the implementation it started with: the flag is saved in the optimizer state and a resumed
run takes it from the checkpoint (exact resume stays exact).
"""

from __future__ import annotations

import torch
from torch import nn

from mae_domains.optim import apply_lr, effective_lr, fused_adamw_supported, lr_at, param_groups
from mae_domains.optim import build_optimizer as build_shared_optimizer

__all__ = ["apply_lr", "build_optimizer", "effective_lr", "fused_adamw_supported", "lr_at", "param_groups"]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    layer_decay: float | None = None,
    depth: int | None = None,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """The shared AdamW (:func:`mae_domains.optim.build_optimizer`) with the fused update by default."""
    return build_shared_optimizer(model, lr, weight_decay, betas, layer_decay, depth, fused=fused)
