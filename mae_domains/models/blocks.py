"""Building blocks of the encoders and decoders: timm ViT blocks, MAE's initialisation, pooling."""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn


def init_mae_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform linear layers, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path_rate: float = 0.0) -> nn.Sequential:
    """``depth`` timm ViT blocks (qkv bias, LayerNorm eps 1e-6, fused attention), linear drop-path schedule."""
    norm = partial(nn.LayerNorm, eps=1e-6)
    rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    return nn.Sequential(
        *[Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm, drop_path=rates[i]) for i in range(depth)]
    )


def pool_tokens(features: torch.Tensor, mode: str, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Image embedding from ``(B, prefix + N, D)`` features: the ``cls`` token or the ``avg`` of the others."""
    if mode == "cls":
        return features[:, 0]
    if mode == "avg":
        return features[:, num_prefix_tokens:].mean(dim=1)
    raise ValueError(f"unknown pooling {mode!r}; use 'cls' or 'avg'")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
