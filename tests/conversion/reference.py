"""Published checkpoints' key layouts built in memory (no downloads): timm ViT blocks under a prefix, the
original MAE decoder, and the reference sin-cos tables of the papers' code, written from their formulas."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from timm.models.vision_transformer import Block
from torch import nn


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """MAE's ``get_1d_sincos_pos_embed_from_grid``: [sin, cos] of positions x omega, omega = 1/10000^(2i/dim)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def mae_2d_table(dim: int, side: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's ``get_2d_sincos_pos_embed``: width half from x (columns), half from y (rows)."""
    grid_w, grid_h = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
    emb = np.concatenate([sincos_1d(dim // 2, grid_w), sincos_1d(dim // 2, grid_h)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


def random_blocks(width: int, depth: int, heads: int, seed: int, **kwargs) -> nn.ModuleList:
    """``depth`` timm blocks with random (not default) weights, including norms and biases."""
    torch.manual_seed(seed)
    blocks = nn.ModuleList(Block(width, heads, 4.0, qkv_bias=kwargs.pop("qkv_bias", True),
                                 norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs) for _ in range(depth))
    with torch.no_grad():
        for name, p in blocks.named_parameters():
            scale = 1.0 / math.sqrt(p.shape[-1]) if p.ndim == 2 else 0.1
            p.copy_(torch.randn_like(p) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return blocks


def prefixed(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().clone() for k, v in module.state_dict().items()}


def run_blocks(blocks: nn.Module, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return norm(x)


def random_norm(width: int, seed: int) -> nn.LayerNorm:
    torch.manual_seed(seed)
    norm = nn.LayerNorm(width, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(width))
        norm.bias.copy_(0.1 * torch.randn(width))
    return norm


def mae_decoder_state(width: int, decoder_width: int, depth: int, heads: int, pred_out: int, seed: int,
                      side: int | None = None) -> dict[str, torch.Tensor]:
    """The original MAE decoder's keys: decoder_embed, mask_token, decoder_pos_embed, decoder_blocks.N,
    decoder_norm, decoder_pred."""
    torch.manual_seed(seed)
    state = {"decoder_embed.weight": torch.randn(decoder_width, width) * 0.05,
             "decoder_embed.bias": torch.randn(decoder_width) * 0.05, "mask_token": torch.randn(1, 1, decoder_width),
             "decoder_norm.weight": 1 + 0.1 * torch.randn(decoder_width), "decoder_norm.bias": torch.randn(decoder_width),
             "decoder_pred.weight": torch.randn(pred_out, decoder_width), "decoder_pred.bias": torch.randn(pred_out)}
    state.update(prefixed(random_blocks(decoder_width, depth, heads, seed + 1), "decoder_blocks."))
    if side is not None:
        state["decoder_pos_embed"] = mae_2d_table(decoder_width, side)
    return state
