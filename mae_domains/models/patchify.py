"""Images <-> per-patch vectors in the original MAE order: patch index row-major, then (p, q, c)."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, (H/p)*(W/p), p*p*C)``; within a patch the order is (row p, col q, channel c)."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}")
    gh, gw = h // p, w // p
    x = images.reshape(b, c, gh, p, gw, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # b, gh, gw, p, q, c
    return x.reshape(b, gh * gw, p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_hw: tuple[int, int], channels: int) -> torch.Tensor:
    """Exact inverse of :func:`patchify`: ``(B, gh*gw, p*p*C)`` -> ``(B, C, gh*p, gw*p)``."""
    b, n, d = patches.shape
    p = patch_size
    gh, gw = grid_hw
    if n != gh * gw or d != p * p * channels:
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} do not match grid {gh}x{gw}, patch {p}, {channels} channels"
        )
    x = patches.reshape(b, gh, gw, p, p, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)  # b, c, gh, p, gw, q
    return x.reshape(b, channels, gh * p, gw * p)
