"""Full fine-tuning of a grid encoder with a classification head (MAE's fine-tuning recipe).

Works for every :class:`~mae_domains.models.grid_mae.GridEncoder` (2D patches, band groups, time series,
3D cubes, channel-shared microscopy): a batch function turns each collated dict batch into the
encoder's :class:`GridBatch` (pixels, validity, spacing, dates ...; by default the ``image`` alone).

- Layer-wise lr decay (:func:`mae_domains.optim.param_groups`): ``embedding.*`` and ``cls_token`` are
  layer 0, ``blocks.i`` is layer ``i + 1``, the final norm and the head are layer ``depth + 1``; a
  parameter's lr is multiplied by ``layer_decay ** (depth + 1 - layer_id)``.
- No weight decay on biases, norms (1-D parameters) and the code tables (CLS, channel codes ...).
- Drop path rising linearly over the blocks to ``drop_path``.
- Pooling: ``avg`` is the mean of the valid grid tokens (MAE's global pool, a :meth:`TokenGrid.pool` over
  every grid axis) through ``fc_norm``: a new LayerNorm as MAE (``fc_norm: true``) or the encoder's final
  norm (``false``); ``cls`` is the normalized CLS token.
- ``position_table: trained`` (MAE: timm's ``pos_embed`` is a parameter, loaded from the fixed sin-cos table
  and trained): a learned table over the spatial grid axes, initialized at zero and added to the encoder's
  fixed codes (the same as training the table itself), layer 0, no weight decay; shared across the other
  axes (channels, groups, frames), whose codes stay as pretrained. ``fixed`` keeps the codes frozen.
- Cross-entropy for single-label (timm ``LabelSmoothingCrossEntropy`` with ``label_smoothing``, or
  ``SoftTargetCrossEntropy`` on mixed targets), BCE for multi-hot targets.
- Batch augmentation (:mod:`mae_domains.evaluation.finetune_transforms`): random erasing, then mixup /
  cutmix (timm), on any input whose last two axes are spatial; ``auto_augment`` (timm RandAugment, RGB
  images) and ``randaugment_magnitude`` (the medical adapters' own ops) act in the runner's loader.
- Warmup + half-cycle cosine (:func:`mae_domains.optim.lr_at`), per step, ``lr = base_lr * batch / 256``.
- Few or uneven labels: ``min_steps`` lengthens the run to at least that many optimizer steps (at 1 % of
  a few hundred labels an epoch is one step, and 20 such steps leave the head near its initial state);
  ``class_weight: balanced`` weighs the cross-entropy by ``n / (k * n_c)``
  (:mod:`mae_domains.labelled.class_balance`), computed on the training labels, so a 9:1 set is not
  learned as "always the majority class".
- Adapters may change these defaults for their modality (``protocol_defaults``, e.g. X-ray: layer decay
  0.55, drop path 0.2, RandAugment magnitude 6); the caller's settings win.
The caller's encoder is copied, never modified. Seeded: the same seed gives the same run. Registered as
the ``finetune`` protocol (:class:`FinetuneProtocol`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from mae_domains.config import ERASING_MODES, POSITION_TABLES
from mae_domains.device import autocast, select_device, select_precision
from mae_domains.evaluation.features import dataset_size, extract_features
from mae_domains.evaluation.finetune_transforms import BatchMixing, erase_batch, seeded_python_and_numpy
from mae_domains.evaluation.metrics import score_result
from mae_domains.grid import GridBatch, as_grid_batch
from mae_domains.grid.axes import AxisKind
from mae_domains.labelled.class_balance import balanced_class_weights, check_class_weight
from mae_domains.models.attention import prefer_matmul_attention
from mae_domains.optim import apply_lr, build_optimizer, lr_at, warmup_within_run
from mae_domains.progress import ProgressClock
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult

log = logging.getLogger(__name__)

POOL_MODES = ("avg", "cls")
ENCODER_PARTS = ("embedding", "cls_token", "blocks", "norm", "embed_dim")
GridBatchFn = Callable[[Mapping[str, Any], torch.device], GridBatch]


def image_grid_batch(batch: Mapping[str, Any], device: torch.device) -> GridBatch:
    """The default batch function: the batch's ``image`` (and per-pixel ``valid`` when present)."""
    valid = batch.get("valid")
    return GridBatch(batch["image"].to(device, non_blocking=True),
                     None if valid is None else valid.to(device, non_blocking=True))


@dataclass
class FinetuneConfig:
    """Fine-tuning settings; ``lr = base_lr * batch_size / 256`` with the loader's batch size. MAE's ViT-B
    recipe (FINETUNE.md) is the ``eval.finetune`` section of ``configs/image_vit_base.yaml``; the defaults
    leave its augmentations off."""

    epochs: int = 50
    base_lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: float = 5
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path: float = 0.1
    pool: str = "avg"
    fc_norm: bool = False  # avg pool: a new LayerNorm (MAE) instead of the encoder's final norm
    position_table: str = "fixed"  # "trained": a learned spatial table on top of the fixed codes (MAE)
    label_smoothing: float = 0.0
    mixup: float = 0.0  # mixup alpha (0 = off)
    cutmix: float = 0.0  # cutmix alpha (0 = off)
    mixup_prob: float = 1.0  # probability of mixing a batch at all
    mixup_switch_prob: float = 0.5  # probability of cutmix rather than mixup when both are on
    erase_prob: float = 0.0  # per-sample probability
    erase_mode: str = "pixel"
    erase_count: int = 1
    auto_augment: str = ""  # timm RandAugment policy for RGB images, e.g. rand-m9-mstd0.5-inc1 ("" = off)
    clip_grad: float | None = None
    max_steps_per_epoch: int | None = None
    min_steps: int = 0  # at least this many optimizer steps: epochs are added to reach it (few labels)
    class_weight: str = "none"  # "balanced": cross-entropy weighted by n / (k * n_c) of the training labels
    randaugment_magnitude: float = 0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.pool not in POOL_MODES:
            raise ValueError(f"unknown pooling {self.pool!r}; use 'avg' or 'cls'")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")
        self.class_weight = check_class_weight(self.class_weight)
        if self.randaugment_magnitude < 0:
            raise ValueError(f"randaugment_magnitude must be >= 0 (0 = off), got {self.randaugment_magnitude}")
        if self.position_table not in POSITION_TABLES:
            raise ValueError(f"position_table must be one of {', '.join(POSITION_TABLES)}, got {self.position_table!r}")
        if self.erase_mode not in ERASING_MODES:
            raise ValueError(f"erase_mode must be one of {', '.join(ERASING_MODES)}, "
                             f"got {self.erase_mode!r}")
        for key in ("label_smoothing", "mixup_prob", "mixup_switch_prob", "erase_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if self.mixup < 0 or self.cutmix < 0 or self.erase_count < 1:
            raise ValueError("mixup and cutmix must be >= 0 (0 = off) and erase_count >= 1")
        if self.auto_augment is None or str(self.auto_augment).lower() == "none":
            self.auto_augment = ""
        if self.auto_augment:
            from timm.data.auto_augment import rand_augment_transform

            try:
                rand_augment_transform(self.auto_augment, {})
            except Exception as err:  # timm raises assorted errors for a bad policy string
                raise ValueError(f"auto_augment {self.auto_augment!r} is not a timm RandAugment policy "
                                 f"(e.g. rand-m9-mstd0.5-inc1): {err}") from None

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

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


class GridClassifier(nn.Module):
    """A grid encoder (``embedding``, ``cls_token``, ``blocks``, ``norm``) plus a linear head, on
    :class:`GridBatch` inputs (a plain tensor is taken as the images). ``fc_norm``: a new LayerNorm after
    average pooling (MAE). A trained position table is added by :meth:`add_position_table`."""

    def __init__(self, encoder: nn.Module, num_classes: int, pool: str = "avg",
                 generator: torch.Generator | None = None, fc_norm: bool = False) -> None:
        super().__init__()
        if pool not in POOL_MODES:
            raise ValueError(f"unknown pooling {pool!r}; use 'avg' or 'cls'")
        missing = [a for a in ENCODER_PARTS if not hasattr(encoder, a)]
        if missing:
            raise TypeError(f"fine-tuning needs a GridEncoder; {type(encoder).__name__} lacks {', '.join(missing)}")
        self.encoder = encoder
        self.pool_mode = pool
        self.fc_norm: nn.Module | None = None
        if fc_norm and pool == "avg":
            self.fc_norm = nn.LayerNorm(encoder.embed_dim, eps=getattr(encoder.norm, "eps", 1e-6))
        self.pos_embed: nn.Parameter | None = None  # (1, *grid axes (1 off the spatial ones), D)
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5, generator=generator)
        nn.init.zeros_(self.head.bias)

    @property
    def depth(self) -> int:
        return len(self.encoder.blocks)

    @staticmethod
    def table_shape(layout: Any) -> tuple[int, ...]:
        """The position table's grid shape: the spatial axes' sizes, 1 along the others."""
        return tuple(a.size if a.kind is AxisKind.SPATIAL else 1 for a in layout.axes)

    def add_position_table(self, batch: GridBatch | torch.Tensor) -> nn.Parameter:
        """A learned position table for the grid of ``batch`` (zeros: at first the pretrained codes alone)."""
        layout = self.encoder.embedding.layout(as_grid_batch(batch))
        shape = self.table_shape(layout)
        if not any(a.kind is AxisKind.SPATIAL for a in layout.axes):
            raise ValueError("position_table=trained needs spatial grid axes")
        device = next(self.encoder.parameters()).device
        self.pos_embed = nn.Parameter(torch.zeros(1, *shape, self.encoder.embed_dim, device=device))
        return self.pos_embed

    def add_table(self, grid: Any) -> Any:
        shape = self.table_shape(grid.layout)
        if tuple(self.pos_embed.shape[1:-1]) != shape:  # type: ignore[union-attr]
            raise ValueError(f"the trained position table is for a grid of {tuple(self.pos_embed.shape[1:-1])} "  # type: ignore[union-attr]
                             f"tokens, this batch has {shape}: fine-tune and evaluate at one input size "
                             "(or use position_table: fixed)")
        table = self.pos_embed.expand(1, *grid.layout.shape, -1).reshape(1, -1, self.encoder.embed_dim)  # type: ignore[union-attr]
        return dataclasses.replace(grid, tokens=grid.tokens + table.to(grid.tokens.dtype))

    def forward_features(self, batch: GridBatch | torch.Tensor) -> torch.Tensor:
        """Pooled, normalized embedding ``(B, D)``."""
        encoder = self.encoder
        grid = encoder.embedding(as_grid_batch(batch))
        if self.pos_embed is not None:
            grid = self.add_table(grid)
        grid = grid.with_prefix(encoder.cls_token.to(grid.tokens.dtype).expand(grid.batch_size, -1, -1))
        grid = grid.replace_sequence(encoder.blocks(grid.sequence()))
        if self.pool_mode == "avg":
            pooled = grid.pool(grid.layout.names).tokens[:, 0]
            return self.fc_norm(pooled) if self.fc_norm is not None else encoder.norm(pooled)
        return encoder.norm(grid.prefix[:, 0])

    def forward(self, batch: GridBatch | torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(batch))


@dataclass
class FinetuneResult:
    """The fine-tuned classifier (CPU, eval mode), mean training loss per epoch and test outputs:
    probabilities ``(N, C)`` (softmax or sigmoid), labels and sample ids."""

    model: GridClassifier
    loss_per_epoch: list[float] = field(default_factory=list)
    test_scores: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    test_sample_ids: list[str] | None = None


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0,
                        soft: bool = False, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE for multi-hot ``(B, C)`` labels; ``soft`` single-label targets ``(B, C)`` (mixup): timm's
    ``SoftTargetCrossEntropy``; integer labels: timm's ``LabelSmoothingCrossEntropy`` (``(1 - e) * NLL + e *
    mean over classes of -log p``), plain cross-entropy without smoothing. ``class_weights`` ``(C,)``: the
    weighted mean over samples of the same losses (PyTorch's weighted ``cross_entropy``; a soft target's
    sample weight is its targets' weighted sum)."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if class_weights is not None and labels.ndim == 1 and not soft:
        return F.cross_entropy(logits.float(), labels.long(), weight=class_weights.to(logits.device),
                               label_smoothing=label_smoothing)
    if class_weights is not None and soft:
        targets = labels.float()
        per_sample = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
        sample_weights = targets @ class_weights.to(logits.device)
        return (per_sample * sample_weights).sum() / sample_weights.sum().clamp_min(torch.finfo(torch.float32).tiny)
    if soft:
        return SoftTargetCrossEntropy()(logits.float(), labels.float())
    if labels.ndim == 2:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if label_smoothing > 0:
        return LabelSmoothingCrossEntropy(label_smoothing)(logits.float(), labels.long())
    return F.cross_entropy(logits.float(), labels.long())


def augment_batch(grid_batch: GridBatch, labels: torch.Tensor, config: FinetuneConfig,
                  mixing: BatchMixing | None) -> tuple[GridBatch, torch.Tensor, bool]:
    """Random erasing, then mixup / cutmix of a training batch: ``(batch, targets, targets are soft)``."""
    images = grid_batch.images
    if config.erase_prob > 0:
        images = erase_batch(images.clone(), config.erase_prob, config.erase_mode,
                             config.erase_count)
    valid = grid_batch.valid
    if mixing is not None:
        images, labels, valid, _ = mixing(images, labels, valid)
    if images is grid_batch.images and valid is grid_batch.valid:
        return grid_batch, labels, mixing is not None
    return dataclasses.replace(grid_batch, images=images, valid=valid), labels, mixing is not None


@torch.enable_grad()
def train_classifier(
    model: GridClassifier,
    train_loader: Iterable[Mapping[str, Any]],
    config: FinetuneConfig,
    device: torch.device,
    batch_fn: GridBatchFn = image_grid_batch,
) -> list[float]:
    """Train ``model`` in place with AdamW over layer-decayed groups; returns mean loss per epoch. Precision
    as the trainer's: ``auto`` is bf16 on GPUs and on CPUs with native bf16 (there with timm attention on
    its matmul path, faster than the fused kernel in bf16)."""
    precision = select_precision(device, config.precision, cpu_bf16=True)
    if device.type == "cpu" and precision.dtype is not None:
        prefer_matmul_attention(model)
    model.to(device).train()
    optimizer: torch.optim.Optimizer | None = None  # built at the first batch (after a position table is added)
    scaler = torch.amp.GradScaler(device.type) if precision.use_grad_scaler else None
    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    epochs = max(config.epochs, -(-config.min_steps // max(steps_per_epoch, 1)))
    if epochs > config.epochs:
        log.info("finetune: %d epochs of %d step(s) to reach min_steps %d (epochs %d)", epochs, steps_per_epoch,
                 config.min_steps, config.epochs)
    total_steps = epochs * steps_per_epoch
    defaults = FinetuneConfig()
    warmup_epochs = config.warmup_epochs * epochs / config.epochs  # the same share of a lengthened run
    warmup = warmup_within_run(warmup_epochs, epochs, defaults.warmup_epochs, defaults.epochs, "finetune")
    class_weights = training_class_weights(train_loader, model.head.out_features) \
        if config.class_weight == "balanced" else None
    warmup_steps = round(warmup * steps_per_epoch)
    mixing: BatchMixing | None = None
    peak_lr: float | None = None
    losses: list[float] = []
    step = 0
    clock = ProgressClock(epochs, unit="epochs")
    for epoch in range(epochs):
        total, count = 0.0, 0
        for i, batch in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            if "image" not in batch:  # every sample of this batch was bad (they are left out, never replaced)
                continue
            grid_batch = batch_fn(batch, device)
            labels = torch.as_tensor(batch["label"]).to(device)
            if optimizer is None:
                peak_lr = config.base_lr * grid_batch.batch_size / 256
                if config.position_table == "trained" and model.pos_embed is None:
                    model.add_position_table(grid_batch)
                optimizer = build_optimizer(model, config.base_lr, config.weight_decay, (0.9, 0.999),
                                            config.layer_decay, model.depth, fused=False)
                if config.mixes:
                    mixing = BatchMixing(model.head.out_features, config.mixup, config.cutmix, config.mixup_prob,
                                         config.mixup_switch_prob, config.label_smoothing, multi_label=labels.ndim == 2)
            assert peak_lr is not None
            apply_lr(optimizer, lr_at(step, peak_lr, total_steps, warmup_steps, config.min_lr))
            grid_batch, targets, soft = augment_batch(grid_batch, labels, config, mixing)
            with autocast(device, precision):
                loss = classification_loss(model(grid_batch), targets, config.label_smoothing,
                                           soft=soft and targets.ndim == 2 and labels.ndim == 1,
                                           class_weights=class_weights)
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
            total += loss.item() * grid_batch.batch_size
            count += grid_batch.batch_size
            step += 1
        losses.append(total / max(count, 1))
        log.info("finetune: epoch %d/%d, loss %.4f (%s)", epoch + 1, epochs, losses[-1], clock.describe(epoch + 1))
    return losses


def training_class_weights(train_loader: Iterable[Mapping[str, Any]], num_classes: int) -> torch.Tensor:
    """Balanced class weights of the training labels: the loader's dataset ``labels`` when it has them
    (no image is read), else one pass over the loader's batches."""
    labels = getattr(getattr(train_loader, "dataset", None), "labels", None)
    if labels is None:
        labels = [label for batch in train_loader if "label" in batch for label in np.asarray(batch["label"])]
    return balanced_class_weights(np.asarray(labels), num_classes)


def finetune(
    encoder: nn.Module,
    train_loader: Iterable[Mapping[str, Any]],
    test_loader: Iterable[Mapping[str, Any]] | None,
    num_classes: int,
    config: FinetuneConfig | None = None,
    progress: bool | None = None,
    batch_fn: GridBatchFn | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``encoder`` on ``train_loader`` and score ``test_loader`` (if given).

    ``batch_fn(batch, device) -> GridBatch`` (e.g. an adapter's ``grid_batch``) defaults to the images.
    Seeded: the global RNG is forked and seeded with ``config.seed`` for the duration (drop path, and a
    DataLoader's shuffling when it has no generator of its own), and the head is drawn from its own generator.
    """
    config = config or FinetuneConfig()
    batch_fn = batch_fn or image_grid_batch
    device = select_device(config.device)
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), seeded_python_and_numpy(config.seed):
        torch.manual_seed(config.seed)  # Python's and NumPy's RNGs draw the erasing boxes and mixing lambdas
        encoder_copy = copy.deepcopy(encoder).float()
        set_drop_path(encoder_copy, config.drop_path)
        generator = torch.Generator().manual_seed(config.seed)
        model = GridClassifier(encoder_copy, num_classes, config.pool, generator, fc_norm=config.fc_norm)
        losses = train_classifier(model, train_loader, config, device, batch_fn)
    result = FinetuneResult(model=model, loss_per_epoch=losses)
    if test_loader is not None:
        logits = extract_features(model, test_loader, device, config.precision, progress=progress,
                                  description="finetune eval", embed_batch=lambda b, d: model(batch_fn(b, d)))
        scores = torch.from_numpy(logits.features)
        result.test_scores = torch.sigmoid(scores) if logits.multilabel else torch.softmax(scores, dim=1)
        result.test_labels = torch.from_numpy(logits.labels)
        result.test_sample_ids = logits.sample_ids
    result.model = model.cpu().eval()
    return result


def finetune_defaults() -> dict:
    settings = FinetuneConfig().settings()
    settings.pop("seed")
    return settings


class FinetuneProtocol(EvaluationProtocol):
    """``finetune``: the whole encoder and a head trained on the (augmented, when given) training split."""

    name = "finetune"
    description = "full fine-tuning with layer-wise lr decay"
    trains_encoder = True

    def defaults(self) -> dict:
        return finetune_defaults()

    def run(self, context: ProtocolContext) -> ProtocolResult:
        if context.encoder is None:
            raise ValueError("finetune needs an encoder (a GridEncoder)")
        fields = {k: context.settings[k] for k in finetune_defaults()}
        config = FinetuneConfig(**fields, seed=context.seed, device=context.device)
        train = context.train_augmented if context.train_augmented is not None else context.train
        if context.class_names is not None:
            num_classes = len(context.class_names)
        else:  # multi-hot labels carry the class count; integer labels need class names
            first_labels = np.asarray(next(iter(train))["label"])
            if first_labels.ndim != 2:
                raise ValueError("finetune needs class_names= to know the number of classes")
            num_classes = first_labels.shape[1]
        result = finetune(context.encoder, train, context.test, num_classes, config, context.progress, context.grid_batch)
        assert result.test_scores is not None and result.test_labels is not None
        return score_result(result.test_scores, result.test_labels, context, n_train=dataset_size(train),
                            details={"loss_per_epoch": result.loss_per_epoch}, sample_ids=result.test_sample_ids)
