"""Reconstruction targets computed from the full-resolution sample, returning ``(target, weight)``.

``target`` and ``weight`` are ``(B, N, P)`` in the embedding's token order; ``weight`` is the per-pixel
validity (0 for nodata and for padding slots of smaller band groups). All statistics are fp32.
"""

from __future__ import annotations

import torch

from mae_domains.grid import GridLayout
from mae_domains.models.embeddings.base import GridBatch, GridEmbedding, pixel_weights


def normalize_valid_patches(target: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``norm_pix``: ``(x - mean) / sqrt(var + eps)`` per token over *valid* values only, unbiased
    variance (the MAE convention); a token with fewer than two valid values gets variance 0 and an
    all-invalid token mean 0, never a division by zero."""
    target, weight = target.float(), weight.float()
    count = weight.sum(-1, keepdim=True)
    mean = (target * weight).sum(-1, keepdim=True) / count.clamp_min(1.0)
    var = ((target - mean) ** 2 * weight).sum(-1, keepdim=True) / (count - 1).clamp_min(1.0)
    return (target - mean) / (var + eps) ** 0.5


class PixelTarget:
    """Pixels of the full-resolution target image (``batch.target_images`` if given, e.g. the sharp
    image behind a blurred input, else the input), optionally normalized per patch (``norm_pix``)."""

    def __init__(self, norm_pix: bool = False, eps: float = 1e-6) -> None:
        self.norm_pix = norm_pix
        self.eps = eps

    def __repr__(self) -> str:
        return f"PixelTarget(norm_pix={self.norm_pix})"

    def __call__(self, batch: GridBatch, embedding: GridEmbedding, layout: GridLayout) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch.target_images if batch.target_images is not None else batch.images
        images = images.float()
        target = embedding.target_patches(images, layout)
        weight = embedding.target_patches(pixel_weights(batch, images, embedding.channel_dim), layout)
        if self.norm_pix:
            target = normalize_valid_patches(target, weight, self.eps)
        return target * (weight > 0), weight


def weighted_patch_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, token_weight: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Per token: weighted mean of the squared (``mse``) or absolute (``l1``) error over its values; then
    the ``token_weight``-weighted mean over tokens (MAE: 1 on masked tokens). Tokens without any valid
    value drop out of both sums."""
    err = pred.float() - target.float()
    err = err.pow(2) if kind == "mse" else err.abs() if kind == "l1" else None
    if err is None:
        raise ValueError(f"unknown loss {kind!r}; use 'mse' or 'l1'")
    count = weight.sum(-1)
    per_token = (err * weight).sum(-1) / count.clamp_min(1e-12)
    token_weight = token_weight.float() * (count > 0)
    return (per_token * token_weight).sum() / token_weight.sum().clamp_min(1.0)
