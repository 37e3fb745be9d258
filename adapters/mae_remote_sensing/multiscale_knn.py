"""``knn_multiscale``: Scale-MAE's kNN protocol, evaluated at several input scales.

For every scale the train and test chips are resized with area interpolation to ``size = scale x chip``
pixels (rounded to a whole number of patches; Scale-MAE ``F.interpolate(inputs, eval_scale, mode="area")``)
and their GSD multiplied by ``chip / size`` (Scale-MAE ``gsd_ratio * 224 / eval_scale``), so a
scale-aware encoder is told the coarser ground sample distance; an encoder without a GSD code just
sees a smaller image. Features are the CLS token (``pool: cls``) of the frozen encoder; each test chip
takes its ``k`` = 20 most cosine-similar training chips, weighted by ``exp(sim / T)`` with T = 0.07,
and the class with the largest weighted vote wins. Top-1 accuracy is reported per scale
(``top1@16px`` ...) and as the mean over scales (``top1_mean``), Scale-MAE's table form.

Registered when :mod:`mae_remote_sensing` is imported (the protocol registry imports adapter packages
for names it does not know), and usable with any encoder that has ``forward_grid``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F

from mae_domains.device import select_device
from mae_domains.grid import GridBatch
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult

DEFAULT_SCALES = (0.25, 0.5, 0.75, 1.0)


def scaled_size(size: int, scale: float, patch: int) -> int:
    """``scale x size`` rounded to a whole number of patches (at least one patch)."""
    return max(patch, int(round(size * float(scale) / patch)) * patch)


def rescale_batch(batch: GridBatch, size: tuple[int, int]) -> GridBatch:
    """Pixels area-resized to ``size``; validity resized (a pixel stays valid when most of it is); the
    per-sample spacing (GSD) multiplied by the size ratio of each axis."""
    h, w = batch.images.shape[-2:]
    if (h, w) == tuple(size):
        return batch
    images = F.interpolate(batch.images.float(), size=size, mode="area")
    valid = batch.valid
    if valid is not None:
        v = valid.float()
        v = v.unsqueeze(1) if v.ndim == 3 else v
        valid = F.interpolate(v, size=size, mode="area") >= 0.5
        valid = valid[:, 0] if batch.valid.ndim == 3 else valid
    meta = dict(batch.meta)
    spacing = meta.get("spacing")
    if spacing is not None:
        ratio = torch.tensor([h / size[0], w / size[1]], dtype=torch.float64, device=spacing.device)
        meta["spacing"] = spacing.to(torch.float64) * ratio
    return GridBatch(images, valid, meta, None)


@torch.no_grad()
def embed_at_scale(encoder: torch.nn.Module, loader: Iterable[Mapping[str, Any]], grid_batch, scale: float,
                   pool: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Features ``(N, D)`` and labels ``(N,)`` of a loader at ``scale``; also the input size used."""
    patch = int(encoder.embedding.patch_size)
    feats, labels, used = [], [], 0
    for batch in loader:
        if batch.get("label") is None:
            raise ValueError("knn_multiscale needs labelled batches (a 'label' per chip)")
        gb = grid_batch(batch, device)
        h, w = gb.images.shape[-2:]
        size = (scaled_size(h, scale, patch), scaled_size(w, scale, patch))
        used = size[0]
        grid = encoder.forward_grid(rescale_batch(gb, size))
        if pool == "cls":
            feats.append(grid.prefix[:, 0].float().cpu())
        elif pool == "avg":
            feats.append(grid.pool(grid.layout.names).tokens[:, 0].float().cpu())
        else:
            raise ValueError(f"knn_multiscale: unknown pool {pool!r}; use 'cls' or 'avg'")
        label = torch.as_tensor(batch["label"])
        if label.ndim != 1:
            raise ValueError("knn_multiscale scores single-label classification; use multilabel_map for multi-label")
        labels.append(label.long().cpu())
    return torch.cat(feats), torch.cat(labels), used


def weighted_knn_predict(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, k: int,
                         temperature: float, num_classes: int, chunk: int = 1024) -> torch.Tensor:
    """Class of each test row: the ``exp(cos / T)``-weighted vote of its ``k`` nearest training rows."""
    train, test = F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)
    k = min(k, train.shape[0])
    out = []
    for start in range(0, test.shape[0], chunk):
        sims, ids = (test[start:start + chunk] @ train.T).topk(k, dim=1)
        weights = torch.exp((sims - sims[:, :1]) / temperature)  # row max subtracted: same vote, no overflow
        votes = torch.zeros(ids.shape[0], num_classes).scatter_add_(1, train_labels[ids], weights)
        out.append(votes.argmax(dim=1))
    return torch.cat(out)


class MultiscaleKnnProtocol(EvaluationProtocol):
    """``knn_multiscale``: weighted kNN (cosine, k, T) on frozen CLS features at several input scales."""

    name = "knn_multiscale"
    description = "weighted kNN on frozen features at several input scales with matching GSD (Scale-MAE)"
    seeded = False

    def defaults(self) -> dict[str, Any]:
        return {"k": 20, "temperature": 0.07, "pool": "cls", "scales": list(DEFAULT_SCALES)}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        encoder, grid_batch = context.encoder, context.grid_batch
        if encoder is None or grid_batch is None or not hasattr(encoder, "forward_grid"):
            raise ValueError("knn_multiscale embeds resized chips itself: it needs a grid encoder and the "
                             "adapter's grid_batch (a checkpoint or export of a grid model)")
        s = context.settings
        scales = [float(v) for v in s["scales"]]
        if not scales or any(v <= 0 for v in scales):
            raise ValueError(f"knn_multiscale: scales must be positive fractions of the chip size, got {s['scales']}")
        device = select_device(context.device) if isinstance(context.device, str) else context.device
        was_training = encoder.training
        encoder.eval()
        summary: dict[str, float] = {}
        details: dict[str, Any] = {"sizes": {}}
        n_train = n_test = 0
        try:
            for scale in scales:
                train, train_labels, size = embed_at_scale(encoder, context.train, grid_batch, scale, s["pool"], device)
                test, test_labels, _ = embed_at_scale(encoder, context.test, grid_batch, scale, s["pool"], device)
                classes = len(context.class_names or []) or int(max(train_labels.max(), test_labels.max())) + 1
                pred = weighted_knn_predict(train, train_labels, test, int(s["k"]), float(s["temperature"]), classes)
                summary[f"top1@{size}px"] = float((pred == test_labels).float().mean())
                details["sizes"][size] = scale
                n_train, n_test = len(train_labels), len(test_labels)
        finally:
            encoder.train(was_training)
        summary["top1_mean"] = sum(summary.values()) / len(summary)
        return ProtocolResult(summary=summary, n_train=n_train, n_test=n_test, details=details)
