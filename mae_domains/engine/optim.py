"""AdamW parameter groups and the warmup + half-cycle cosine learning-rate schedule (MAE recipe)."""

from __future__ import annotations

import math

import torch
from torch import nn

# Like timm (and unlike the original MAE code, which decays them), position tables, the CLS token
# and the mask token get no weight decay; nor do norms and biases (all 1-D parameters).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "channel_embed", "group_embed")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.split(".")[-1] in NO_DECAY_NAMES or name.endswith(NO_DECAY_NAMES):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def effective_lr(base_lr: float, lr: float | None, effective_batch: int) -> float:
    """Absolute ``lr`` if given, else ``base_lr * effective_batch / 256`` (linear scaling rule)."""
    return lr if lr is not None else base_lr * effective_batch / 256


def lr_at(step: int, peak_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup to ``peak_lr``, then half-cycle cosine down to ``min_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)
