"""Linear probe on frozen, precomputed features (MAE recipe).

The head is ``BatchNorm1d(affine=False, eps=1e-6)`` followed by ``nn.Linear``: the parameter-free
BatchNorm standardizes the features (MAE features are not normalized the way contrastive ones are)
without changing what a linear classifier can express. Training uses SGD with momentum, LARS (MAE's
choice for large batches) or AdamW, the shared warmup + half-cycle cosine schedule
(:func:`mae_domains.optim.lr_at`), cross-entropy for single-label and binary cross-entropy for multi-hot
targets (``class_weight: balanced``: weighted by ``n / (k * n_c)`` of the training labels, for uneven
classes). Initialization and shuffling draw from a generator seeded by ``config.seed``; the global RNG is
never touched. Registered as the ``linear_probe`` protocol (:class:`LinearProbeProtocol`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mae_domains.device import select_device
from mae_domains.evaluation.knn import as_tensor, prepare_labels
from mae_domains.evaluation.metrics import class_count, score_result
from mae_domains.labelled.class_balance import balanced_class_weights, check_class_weight
from mae_domains.optim import apply_lr, lr_at, warmup_within_run
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult

OPTIMIZERS = ("sgd", "lars", "adamw")
DEFAULT_BASE_LR = {"sgd": 0.1, "lars": 0.1, "adamw": 1e-3}


@dataclass
class LinearProbeConfig:
    """Training settings; ``lr = base_lr * batch_size / 256`` (``base_lr=None``: per-optimizer default).

    LARS follows MAE (base lr 0.1 at batch 16384 for 90 ImageNet epochs); its trust ratio shrinks every
    update to ~0.001 of the weight norm, so on small archives with small batches use SGD, AdamW or a much
    larger LARS base lr (about 10).
    """

    epochs: int = 100
    batch_size: int = 256
    optimizer: str = "sgd"
    base_lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    warmup_epochs: float = 10
    class_weight: str = "none"  # "balanced": cross-entropy weighted by n / (k * n_c) of the training labels
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        self.class_weight = check_class_weight(self.class_weight)

    def learning_rate(self, batch_size: int) -> float:
        base = DEFAULT_BASE_LR[self.optimizer] if self.base_lr is None else self.base_lr
        return base * batch_size / 256

    def settings(self) -> dict:
        """The settings that define a result (device excluded)."""
        out = asdict(self)
        out.pop("device")
        return out


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio on weight matrices (MAE's ``util/lars.py``).

    Parameters with one dimension (biases) get plain momentum SGD without weight decay.
    """

    def __init__(self, params, lr: float = 0.0, weight_decay: float = 0.0, momentum: float = 0.9,
                 trust_coefficient: float = 0.001) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if p.ndim > 1:
                    update = update.add(p, alpha=group["weight_decay"])
                    param_norm, update_norm = torch.norm(p), torch.norm(update)
                    one = torch.ones_like(param_norm)
                    trust = torch.where(
                        (param_norm > 0) & (update_norm > 0), group["trust_coefficient"] * param_norm / update_norm, one
                    )
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(update)
                p.add_(buffer, alpha=-group["lr"])
        return None


class LinearProbeHead(nn.Module):
    """``BatchNorm1d(affine=False)`` then ``Linear``; weights ~ truncated normal (std 0.01), bias 0."""

    def __init__(self, in_features: int, num_classes: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(in_features, affine=False, eps=1e-6)
        self.linear = nn.Linear(in_features, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.01, generator=generator)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features))


@dataclass
class LinearProbeResult:
    """The trained head (on CPU), mean training loss per epoch and, if test features were given, test
    scores (softmax probabilities, or sigmoid for multi-label)."""

    head: LinearProbeHead
    loss_per_epoch: list[float] = field(default_factory=list)
    test_scores: torch.Tensor | None = None
    warmup_steps: int = 0


def _make_optimizer(head: nn.Module, config: LinearProbeConfig, lr: float) -> torch.optim.Optimizer:
    params = [p for p in head.parameters() if p.requires_grad]
    if config.optimizer == "lars":
        return LARS(params, lr=lr, weight_decay=config.weight_decay, momentum=config.momentum)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


@torch.enable_grad()  # callers often hold features under no_grad
def train_linear_probe(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    config: LinearProbeConfig | None = None,
    num_classes: int | None = None,
) -> LinearProbeResult:
    """Fit a :class:`LinearProbeHead` on ``(N, D)`` features; labels ``(N,)`` int or ``(N, K)`` multi-hot."""
    config = config or LinearProbeConfig()
    device = select_device(config.device)
    features = as_tensor(train_features).float().to(device)
    labels, multilabel, num_classes = prepare_labels(train_labels, num_classes, device)
    n = features.shape[0]
    generator = torch.Generator().manual_seed(config.seed)
    head = LinearProbeHead(features.shape[1], num_classes, generator).to(device)
    batch_size = min(config.batch_size, n)
    if n > batch_size and n % batch_size == 1:
        batch_size += 1  # never leave a last batch of one: BatchNorm cannot normalize it
    peak_lr = config.learning_rate(batch_size)
    optimizer = _make_optimizer(head, config, peak_lr)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = config.epochs * steps_per_epoch
    defaults = LinearProbeConfig()
    warmup = warmup_within_run(config.warmup_epochs, config.epochs, defaults.warmup_epochs, defaults.epochs,
                               "linear_probe")
    warmup_steps = round(warmup * steps_per_epoch)
    result = LinearProbeResult(head=head, warmup_steps=warmup_steps)
    class_weights = balanced_class_weights(labels, num_classes).to(device) \
        if config.class_weight == "balanced" else None
    head.train()
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator).to(device)
        epoch_loss = 0.0
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            apply_lr(optimizer, lr_at(step, peak_lr, total_steps, warmup_steps))
            logits = head(features[rows])
            if multilabel:
                loss = F.binary_cross_entropy_with_logits(logits, labels[rows])
            else:
                loss = F.cross_entropy(logits, labels[rows], weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * rows.numel()
            step += 1
        result.loss_per_epoch.append(epoch_loss / n)
    result.head = head.cpu().eval()
    return result


@torch.no_grad()
def probe_scores(head: LinearProbeHead, features: np.ndarray | torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Probabilities from a trained head in eval mode (BatchNorm uses its running statistics)."""
    head.eval()
    logits = head(as_tensor(features).float().to(next(head.parameters()).device)).cpu()
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def linear_probe(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    config: LinearProbeConfig | None = None,
    num_classes: int | None = None,
) -> LinearProbeResult:
    """Train on the train features and score the test features (``result.test_scores``, ``(N_test, C)``)."""
    result = train_linear_probe(train_features, train_labels, config, num_classes)
    result.test_scores = probe_scores(result.head, test_features, multilabel=as_tensor(train_labels).ndim == 2)
    return result


def linear_probe_accuracy(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    config: LinearProbeConfig | None = None,
) -> float:
    """Top-1 test accuracy of a single-label linear probe."""
    test_labels = as_tensor(test_labels).long()
    num_classes = int(max(as_tensor(train_labels).max().item(), test_labels.max().item())) + 1
    result = linear_probe(train_features, train_labels, test_features, config, num_classes)
    assert result.test_scores is not None
    return float((result.test_scores.argmax(dim=1) == test_labels).float().mean().item())


def probe_config(settings: dict, seed: int, device: str) -> LinearProbeConfig:
    """A :class:`LinearProbeConfig` from resolved protocol settings (other keys are ignored)."""
    fields = {k: settings[k] for k in LinearProbeConfig().settings() if k != "seed" and k in settings}
    return LinearProbeConfig(**fields, seed=seed, device=device)


def probe_defaults() -> dict:
    """The probe's settings without the seed, plus the pooling of the frozen features."""
    settings = LinearProbeConfig().settings()
    settings.pop("seed")
    return {**settings, "pool": "cls"}


class LinearProbeProtocol(EvaluationProtocol):
    """``linear_probe``: a BatchNorm + linear head trained on frozen features, once per seed."""

    name = "linear_probe"
    description = "linear classifier on frozen features (MAE recipe)"

    def defaults(self) -> dict:
        return probe_defaults()

    def run(self, context: ProtocolContext) -> ProtocolResult:
        train, test = context.split_features("train"), context.split_features("test")
        config = probe_config(context.settings, context.seed, context.device)
        num_classes = class_count(context.class_names, train.labels, test.labels)
        result = linear_probe(train.features, train.labels, test.features, config, num_classes)
        return score_result(result.test_scores, test.labels, context, n_train=len(train),
                            details={"loss_per_epoch": result.loss_per_epoch},
                            sample_ids=getattr(test, "sample_ids", None))
