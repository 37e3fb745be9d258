"""The one learning-rate schedule and parameter-group builder of pretraining, probing and fine-tuning.

- :func:`lr_at`: MAE's schedule, linear warmup from 0 (``lr = peak * step / warmup_steps``, so step 0
  trains with lr 0) and then a half-cycle cosine from ``peak`` down to ``min_lr`` at ``total_steps``.
- :func:`param_groups`: AdamW groups. Like timm (and unlike the original MAE code, which decays the CLS
  and mask tokens) no weight decay on 1-D parameters (biases, norms) nor on the named tables of
  :data:`NO_DECAY_NAMES` (position, CLS, mask, channel and group codes). With ``layer_decay`` each
  group also carries ``lr_scale = layer_decay ** (depth + 1 - layer_id)`` (MAE's layer-wise lr decay),
  with layer ids from :func:`layer_id`.
- :func:`apply_lr`: sets every group's lr to ``lr * lr_scale``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

NO_DECAY_NAMES = frozenset({
    "pos_embed", "cls_token", "mask_token", "register_tokens", "channel_embed", "group_embed", "channel_tables",
    "date_embed", "time_embed",
})
# First name components (after an optional ``encoder.``) that belong to layer 0: the token embedding
# (grid ``embedding.*`` or the plain ViT's ``patch_embed.*``) and the tokens and tables beside it.
EMBEDDING_NAMES = frozenset({"embedding", "patch_embed", "cls_token", "pos_embed", "register_tokens", "mask_token"})


def effective_lr(base_lr: float, lr: float | None, effective_batch: int) -> float:
    """Absolute ``lr`` if given, else ``base_lr * effective_batch / 256`` (the linear scaling rule)."""
    return lr if lr is not None else base_lr * effective_batch / 256


def lr_at(step: int, peak_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate before optimizer step ``step`` (0-based): ``peak * step / warmup_steps`` while
    warming up (0 at step 0), then half-cycle cosine to ``min_lr`` at ``total_steps`` (held after)."""
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies: not to 1-D parameters nor to a name with a :data:`NO_DECAY_NAMES` part."""
    return param.ndim > 1 and not NO_DECAY_NAMES.intersection(name.split("."))


def layer_id(name: str, depth: int) -> int:
    """Layer of a parameter for lr decay, names relative to an encoder or prefixed with ``encoder.``:
    the embedding and the tokens beside it are 0, ``blocks.i`` is ``i + 1``, the rest (final norm, a
    classification head) ``depth + 1``."""
    parts = name.split(".")
    if parts[0] == "encoder":
        parts = parts[1:]
    if parts[0] in EMBEDDING_NAMES:
        return 0
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1]) + 1
    return depth + 1


def param_groups(
    model: nn.Module,
    weight_decay: float,
    layer_decay: float | None = None,
    depth: int | None = None,
    layer_of: Callable[[str, int], int] = layer_id,
) -> list[dict[str, Any]]:
    """Optimizer groups of the trainable parameters (frozen ones, e.g. a fixed sin-cos table, are left out).

    Without ``layer_decay``: ``[decayed, not decayed]``, both with ``lr_scale`` 1. With it (``depth`` = the
    encoder's block count): one group per (layer, decays), sorted by layer, each with ``layer_id`` and
    ``lr_scale``. Every group lists its ``param_names``.
    """
    if layer_decay is not None:
        if depth is None:
            raise ValueError("layer_decay needs the encoder depth")
        if not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decayed = decays(name, param)
        layer = layer_of(name, depth) if layer_decay is not None else 0  # type: ignore[arg-type]
        key = (layer, not decayed) if layer_decay is None else (layer, decayed)
        group = groups.get(key)
        if group is None:
            scale = 1.0 if layer_decay is None else layer_decay ** (depth + 1 - layer)  # type: ignore[operator]
            group = groups[key] = {"params": [], "param_names": [], "weight_decay": weight_decay if decayed else 0.0,
                                   "lr_scale": scale}
            if layer_decay is not None:
                group["layer_id"] = layer
        group["params"].append(param)
        group["param_names"].append(name)
    if layer_decay is None:  # always both groups, decayed first (the engine's checkpoints expect two)
        for key, wd in (((0, False), weight_decay), ((0, True), 0.0)):
            groups.setdefault(key, {"params": [], "param_names": [], "weight_decay": wd, "lr_scale": 1.0})
    return [groups[key] for key in sorted(groups)]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    layer_decay: float | None = None,
    depth: int | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (``param_names`` kept out of the optimizer state)."""
    groups = param_groups(model, weight_decay, layer_decay, depth)
    for group in groups:
        group.pop("param_names")
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr to ``lr`` times its ``lr_scale`` (1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
