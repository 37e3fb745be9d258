"""Reconstruction losses in the MAE convention."""

from __future__ import annotations

import torch


def normalize_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE ``norm_pix_loss`` target: ``(x - mean) / sqrt(var + eps)`` per patch, unbiased variance, fp32."""
    target = target.float()
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)  # unbiased, as torch's default and the original code
    return (target - mean) / (var + eps) ** 0.5


def masked_mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-patch MSE averaged over the patch's values, then averaged over masked patches (mask = 1)."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)
    mask = mask.float()
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
