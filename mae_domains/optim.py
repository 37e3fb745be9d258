"""The one learning-rate schedule and parameter-group builder of pretraining, probing and fine-tuning.

- :func:`lr_at`: MAE's schedule, linear warmup from 0 (``lr = peak * step / warmup_steps``, so step 0
  trains with lr 0) and then a half-cycle cosine from ``peak`` down to ``min_lr`` at ``total_steps``.
- :func:`param_groups`: AdamW groups. Like timm (and unlike the original MAE code, which decays the CLS
  and mask tokens) no weight decay on 1-D parameters (biases, norms) nor on the named tables of
  :data:`NO_DECAY_NAMES` (position, CLS, mask, channel and group codes). With ``layer_decay`` each
  group also carries ``lr_scale = layer_decay ** (depth + 1 - layer_id)`` (MAE's layer-wise lr decay),
  with layer ids from :func:`layer_id`.
- :func:`apply_lr`: sets every group's lr to ``lr * lr_scale``.
- :class:`Schedule` / :func:`resolve_schedule`: a run's schedule in optimizer steps, from warmup given in
  epochs or steps and the run's optimizer steps per epoch (micro-batches per epoch / accumulation).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

log = logging.getLogger("mae_domains.optim")

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


def warmup_within_run(warmup_epochs: float, epochs: int, default_warmup: float, default_epochs: int, what: str) -> float:
    """``warmup_epochs``, or, when it would not end before the run does, the default recipe's share of the
    run (e.g. 10 of 100 epochs: 0.3 of 3), with a warning: a warmup as long as the run leaves the model
    near its initial state and the result near chance."""
    if warmup_epochs < epochs:
        return float(warmup_epochs)
    clamped = epochs * default_warmup / default_epochs
    log.warning("%s: warmup_epochs %g is not shorter than epochs %d; warming up for %.3g epochs instead (the "
                "default recipe's share, %g of %d epochs); set warmup_epochs below epochs to choose", what,
                warmup_epochs, epochs, clamped, default_warmup, default_epochs)
    return clamped


def lr_at(step: int, peak_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate before optimizer step ``step`` (0-based): ``peak * step / warmup_steps`` while
    warming up (0 at step 0), then half-cycle cosine to ``min_lr`` at ``total_steps`` (held after)."""
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(warmup_epochs: float | None, warmup_steps: int | None, steps_per_epoch: float) -> int:
    """Warmup in optimizer steps: ``warmup_steps`` as given, or ``round(warmup_epochs * steps_per_epoch)``
    (exact MAE when the product is whole); 0 when neither is given. Both given is an error."""
    if warmup_epochs is not None and warmup_steps is not None:
        raise ValueError("give warmup in epochs or in steps, not both")
    if warmup_epochs is not None:
        return int(round(warmup_epochs * steps_per_epoch))
    return int(warmup_steps or 0)


@dataclass(frozen=True)
class Schedule:
    """A run's resolved schedule: warmup from 0 over ``warmup_steps``, half-cycle cosine to ``min_lr``
    at ``total_steps`` (optimizer steps); ``steps_per_epoch`` is in optimizer steps (may be fractional
    with accumulation)."""

    peak_lr: float
    total_steps: int
    warmup_steps: int
    steps_per_epoch: float
    min_lr: float = 0.0

    def lr(self, step: int) -> float:
        return lr_at(step, self.peak_lr, self.total_steps, self.warmup_steps, self.min_lr)

    def epochs(self, steps: int) -> float:
        return steps / self.steps_per_epoch if self.steps_per_epoch else 0.0

    def describe(self) -> str:
        """One line for the log and the run's config.yaml."""
        return (f"schedule: peak lr {self.peak_lr:.4g}, warmup {self.warmup_steps} steps "
                f"({self.epochs(self.warmup_steps):.4g} epochs), total {self.total_steps} steps "
                f"({self.epochs(self.total_steps):.4g} epochs of {self.steps_per_epoch:.4g} steps), "
                f"min lr {self.min_lr:.4g}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_schedule(
    peak_lr: float,
    micro_batches_per_epoch: int,
    accum_steps: int = 1,
    epochs: float | None = None,
    max_steps: int | None = None,
    warmup_epochs: float | None = None,
    warmup_steps: int | None = None,
    min_lr: float = 0.0,
) -> Schedule:
    """The schedule of a run of ``max_steps`` optimizer steps, else ``epochs`` (default 1) epochs of
    ``micro_batches_per_epoch`` global batches accumulated ``accum_steps`` at a time, with warmup in
    epochs or steps (:func:`warmup_steps_for`)."""
    steps_per_epoch = micro_batches_per_epoch / accum_steps
    total = max_steps or int((epochs or 1) * micro_batches_per_epoch) // accum_steps
    warmup = warmup_steps_for(warmup_epochs, warmup_steps, steps_per_epoch)
    return Schedule(peak_lr, total, warmup, steps_per_epoch, min_lr)


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
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (``param_names`` kept out of the optimizer state). ``fused=None``
    (or True), the default, uses the fused single-kernel update where supported (one pass per tensor
    instead of about ten elementwise ones: a tenth of a CPU ViT-B step), else the ``foreach`` loop;
    ``False`` keeps torch's default update (fine-tuning's, whose results were measured with it). The
    fused update rounds slightly differently, so a resumed run keeps the flag its checkpoint saved."""
    groups = param_groups(model, weight_decay, layer_decay, depth)
    for group in groups:
        group.pop("param_names")
    if fused is False:
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    params = [p for g in groups for p in g["params"]]
    if params and fused_adamw_supported(params):
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
        except (RuntimeError, ValueError) as err:  # a build or dtype without the fused kernel
            log.info("fused AdamW is not available here (%s); using the foreach update", err)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True if params else None)


FUSED_DEVICE_TYPES = ("cpu", "cuda", "xpu", "mps")


def fused_adamw_supported(params: list[torch.Tensor]) -> bool:
    """Whether fused AdamW can update ``params``: floating point, all on one device of a supported type."""
    devices = {p.device for p in params}
    if len(devices) > 1:
        return False
    return all(p.is_floating_point() for p in params) and all(d.type in FUSED_DEVICE_TYPES for d in devices)


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr to ``lr`` times its ``lr_scale`` (1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
