"""Full fine-tuning of a ViT encoder with a classification head (MAE's fine-tuning recipe).

- Layer-wise lr decay: patch embedding, CLS token and position table are layer 0, ``blocks.i`` is layer
  ``i + 1``, the final norm and the head are layer ``depth + 1``; a parameter's lr is multiplied by
  ``layer_decay ** (depth + 1 - layer_id)``.
- No weight decay on biases, norms (1-D parameters), ``cls_token`` or ``pos_embed`` (timm's choice).
- Drop path rising linearly over the blocks to ``drop_path``.
- Pooling: ``avg`` averages the patch tokens before the final LayerNorm (MAE's global pool, with the
  encoder's norm in the place of ``fc_norm``); ``cls`` takes the normalized CLS token.
- Cross-entropy (optional label smoothing) for single-label, BCE for multi-hot targets.
The caller's encoder is copied, never modified. Small configs run in seconds on a CPU.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from mae_domains.device import autocast, select_device, select_precision
from mae_domains.evaluation.features import extract_features
from mae_domains.evaluation.linear_probe import warmup_cosine

POOL_MODES = ("avg", "cls")


@dataclass
class FinetuneConfig:
    """Fine-tuning settings; ``lr = base_lr * batch_size / 256`` with the loader's batch size."""

    epochs: int = 50
    base_lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 5
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path: float = 0.1
    pool: str = "avg"
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    max_steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.pool not in POOL_MODES:
            raise ValueError(f"unknown pooling {self.pool!r}; use 'avg' or 'cls'")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")

    def settings(self) -> dict:
        """The settings that define a result (device and precision excluded)."""
        out = asdict(self)
        out.pop("device")
        out.pop("precision")
        return out


def set_drop_path(encoder: nn.Module, rate: float) -> None:
    """Drop-path rates rising linearly from 0 (first block) to ``rate`` (last), as timm builds them."""
    blocks = list(encoder.blocks)
    for i, block in enumerate(blocks):
        block_rate = rate * i / max(len(blocks) - 1, 1)
        for attr in ("drop_path1", "drop_path2"):
            setattr(block, attr, DropPath(block_rate) if block_rate > 0 else nn.Identity())


class ViTClassifier(nn.Module):
    """An encoder (``embed``, ``cls_tokens``, ``blocks``, ``norm``) plus a linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int, pool: str = "avg", generator: torch.Generator | None = None) -> None:
        super().__init__()
        if pool not in POOL_MODES:
            raise ValueError(f"unknown pooling {pool!r}; use 'avg' or 'cls'")
        missing = [a for a in ("embed", "cls_tokens", "blocks", "norm", "embed_dim", "num_prefix_tokens") if not hasattr(encoder, a)]
        if missing:
            raise TypeError(f"fine-tuning needs a ViTEncoder-like encoder; {type(encoder).__name__} lacks {', '.join(missing)}")
        self.encoder = encoder
        self.pool_mode = pool
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5, generator=generator)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled, normalized image embedding ``(B, D)``."""
        tokens, _ = self.encoder.embed(images)
        tokens = torch.cat([self.encoder.cls_tokens(tokens.shape[0]), tokens], dim=1)
        tokens = self.encoder.blocks(tokens)
        if self.pool_mode == "avg":
            return self.encoder.norm(tokens[:, self.encoder.num_prefix_tokens :].mean(dim=1))
        return self.encoder.norm(tokens)[:, 0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images))


def layer_id_for_param(name: str, depth: int) -> int:
    """Layer index of a parameter for lr decay (names relative to a classifier or to the encoder)."""
    name = name.removeprefix("encoder.")
    if name in ("cls_token", "pos_embed", "mask_token") or name.startswith("patch_embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups_layer_decay(
    model: nn.Module,
    depth: int,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    no_weight_decay: Iterable[str] = ("cls_token", "pos_embed"),
) -> list[dict[str, Any]]:
    """Optimizer param groups, one per (layer, decay or not), each with ``lr_scale`` and ``layer_id``.

    Frozen parameters (``requires_grad=False``, e.g. a fixed sin-cos table) are left out.
    """
    skip = set(no_weight_decay)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = layer_id_for_param(name, depth)
        decays = not (param.ndim == 1 or name.removeprefix("encoder.") in skip)
        group = groups.setdefault(
            (layer_id, decays),
            {
                "params": [],
                "param_names": [],
                "layer_id": layer_id,
                "lr_scale": layer_decay ** (depth + 1 - layer_id),
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(param)
        group["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


@dataclass
class FinetuneResult:
    """The fine-tuned classifier (CPU, eval mode), mean training loss per epoch and test outputs:
    probabilities ``(N, C)`` (softmax or sigmoid), labels and sample ids."""

    model: ViTClassifier
    loss_per_epoch: list[float] = field(default_factory=list)
    test_scores: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    test_sample_ids: list[str] | None = None


def _loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    if labels.ndim == 2:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels.long(), label_smoothing=label_smoothing)


@torch.enable_grad()
def train_classifier(
    model: ViTClassifier,
    train_loader: Iterable[Mapping[str, Any]],
    config: FinetuneConfig,
    device: torch.device,
) -> list[float]:
    """Train ``model`` in place with AdamW over layer-decayed groups; returns mean loss per epoch."""
    precision = select_precision(device, config.precision)
    groups = param_groups_layer_decay(model, model.encoder.depth, config.weight_decay, config.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=config.base_lr, betas=(0.9, 0.999))
    scaler = torch.amp.GradScaler(device.type) if precision.use_grad_scaler else None
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(config.warmup_epochs, config.epochs - 1) * steps_per_epoch
    peak_lr: float | None = None
    losses: list[float] = []
    step = 0
    model.to(device).train()
    for _ in range(config.epochs):
        total, count = 0.0, 0
        for i, batch in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            images = batch["image"].to(device, non_blocking=True)
            labels = torch.as_tensor(batch["label"]).to(device)
            if peak_lr is None:
                peak_lr = config.base_lr * images.shape[0] / 256
            lr = warmup_cosine(step, total_steps, warmup_steps, peak_lr, config.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            with autocast(device, precision):
                loss = _loss(model(images), labels, config.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite fine-tuning loss at step {step}: {loss.item()}")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if config.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            total += loss.item() * images.shape[0]
            count += images.shape[0]
            step += 1
        losses.append(total / max(count, 1))
    return losses


def finetune(
    encoder: nn.Module,
    train_loader: Iterable[Mapping[str, Any]],
    test_loader: Iterable[Mapping[str, Any]] | None,
    num_classes: int,
    config: FinetuneConfig | None = None,
    progress: bool | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``encoder`` on ``train_loader`` and score ``test_loader`` (if given).

    Seeded: the global RNG is forked and seeded with ``config.seed`` for the duration (drop path, and a
    DataLoader's shuffling when it has no generator of its own), and the head is drawn from its own generator.
    """
    config = config or FinetuneConfig()
    device = select_device(config.device)
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(config.seed)
        encoder_copy = copy.deepcopy(encoder).float()
        set_drop_path(encoder_copy, config.drop_path)
        generator = torch.Generator().manual_seed(config.seed)
        model = ViTClassifier(encoder_copy, num_classes, config.pool, generator)
        losses = train_classifier(model, train_loader, config, device)
    result = FinetuneResult(model=model, loss_per_epoch=losses)
    if test_loader is not None:
        logits = extract_features(model, test_loader, device, config.precision, progress=progress, description="finetune eval")
        scores = torch.from_numpy(logits.features)
        multilabel = logits.labels.ndim == 2
        result.test_scores = torch.sigmoid(scores) if multilabel else torch.softmax(scores, dim=1)
        result.test_labels = torch.from_numpy(logits.labels)
        result.test_sample_ids = logits.sample_ids
    result.model = model.cpu().eval()
    return result
