"""Scaled dot-product attention that picks the faster kernel for the dtype and device.

On CUDA and for fp32 on CPU, ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels) is the
fastest. For bf16 (or fp16) on CPU its flash kernel is not: with the short sequences and 32-64 wide heads
of MAE encoders (50 visible tokens) and decoders (197 tokens), its backward runs about twice as long as
the plain ``softmax(q k^T / sqrt(d)) v`` with bf16 matmuls (measured with
``benchmarks/bench_pretrain_step.py --profile``). :func:`attention` takes the plain path there, and
:func:`prefer_matmul_attention` switches timm's ``Attention`` modules (encoder and decoder blocks) to
their own plain path (``fused_attn = False``) for a run in CPU mixed precision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOW_PRECISION = (torch.bfloat16, torch.float16)


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over ``(B, H, L, d)`` tensors, as timm's unfused path."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v


def uses_matmul_attention(q: torch.Tensor) -> bool:
    """Whether :func:`attention` takes the plain matmul path for ``q``: low precision on CPU (also when
    autocast will cast fp32 inputs to bf16)."""
    if q.device.type != "cpu":
        return False
    if q.dtype in LOW_PRECISION:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in LOW_PRECISION


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention of ``q`` ``(B, H, Lq, d)`` over ``k, v`` ``(B, H, Lk, d)`` with the faster kernel."""
    if uses_matmul_attention(q):
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        return matmul_attention(q, k, v, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def prefer_matmul_attention(model: nn.Module, enabled: bool = True) -> int:
    """Set timm ``Attention`` modules of ``model`` to their plain matmul path (``enabled``) or back to
    fused SDPA; returns how many modules were switched."""
    from timm.models.vision_transformer import Attention

    count = 0
    for module in model.modules():
        if isinstance(module, Attention) and hasattr(module, "fused_attn"):
            module.fused_attn = not enabled
            count += 1
    return count
