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

import logging

import torch
from torch import nn

from mae_domains.optim import apply_lr, effective_lr, lr_at, param_groups

log = logging.getLogger("mae_domains.engine")

__all__ = ["apply_lr", "build_optimizer", "effective_lr", "fused_adamw_supported", "lr_at", "param_groups"]

FUSED_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps")


def fused_adamw_supported(params: list[torch.Tensor]) -> bool:
    """Whether fused AdamW can update ``params``: floating point, all on one device of a supported type."""
    devices = {p.device for p in params}
    if len(devices) > 1:
        return False
    return all(p.is_floating_point() for p in params) and all(d.type in FUSED_DEVICE_TYPES for d in devices)


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    layer_decay: float | None = None,
    depth: int | None = None,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`. ``fused=None`` uses the fused kernel where supported and falls back
    to the multi-tensor (``foreach``) loop otherwise; ``False`` forces the fallback."""
    groups = param_groups(model, weight_decay, layer_decay, depth)
    for group in groups:
        group.pop("param_names")
    params = [p for g in groups for p in g["params"]]
    if fused is not False and params and fused_adamw_supported(params):
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
        except (RuntimeError, ValueError) as err:  # a build or dtype without the fused kernel
            log.info("fused AdamW is not available here (%s); using the foreach update", err)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True if params else None)
