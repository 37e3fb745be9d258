"""Embeddings of a whole dataset from a frozen model, with an on-disk cache of plain arrays.

Batches are dicts: ``image`` (float tensor), ``label`` (int ``(B,)`` or multi-hot float ``(B, K)``) and
``sample_id`` (list of str). The model is any ``embed_fn(images) -> (B, D)``; an encoder (a
``GridEncoder``, or anything with ``forward_features`` and ``pool``) is wrapped in
:class:`EncoderEmbedding`; ``embed_batch(batch, device)`` (e.g. an adapter's ``embed``) replaces the
image call when the model needs more of the batch (validity, spacing, dates).

The cache stores ``.npy`` arrays plus a JSON sidecar (sample ids, settings) under a key hashed from
(checkpoint id, dataset id, settings); nothing is pickled, and ``np.load`` runs with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mae_domains.device import autocast, select_device, select_precision

log = logging.getLogger(__name__)

EmbedFn = Callable[[torch.Tensor], torch.Tensor]
BatchEmbedFn = Callable[[Mapping[str, Any], torch.device], torch.Tensor]
CACHE_FORMAT_VERSION = 1


@dataclass
class FeatureSet:
    """Embeddings ``(N, D)`` float32, labels ``(N,)`` int64 or ``(N, K)`` float32, and sample ids."""

    features: np.ndarray
    labels: np.ndarray
    sample_ids: list[str]

    def __post_init__(self) -> None:
        if not (len(self.features) == len(self.labels) == len(self.sample_ids)):
            raise ValueError(
                f"features ({len(self.features)}), labels ({len(self.labels)}) and sample ids "
                f"({len(self.sample_ids)}) differ in length"
            )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, labels)`` as torch tensors (shared memory with the arrays)."""
        return torch.from_numpy(self.features), torch.from_numpy(self.labels)


class EncoderEmbedding(nn.Module):
    """``images -> (B, D)`` from an encoder's ``forward_features`` and ``pool`` (``cls`` or ``avg``)."""

    def __init__(self, encoder: nn.Module, pool: str = "cls") -> None:
        super().__init__()
        if not (hasattr(encoder, "forward_features") and hasattr(encoder, "pool")):
            raise TypeError(f"{type(encoder).__name__} has no forward_features/pool; pass an embed_fn instead")
        self.encoder = encoder
        self.pool_mode = pool

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.pool(self.encoder.forward_features(images), self.pool_mode)


class RawPixelEmbedding(nn.Module):
    """Baseline: the flattened pixels themselves (optionally average-pooled to ``size`` first)."""

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.size is not None and images.shape[-1] != self.size:
            images = nn.functional.adaptive_avg_pool2d(images, self.size)
        return images.flatten(1)


def grid_embedder(encoder: nn.Module, grid_batch: Callable[[Mapping[str, Any], torch.device], Any],
                  pool: str = "cls") -> BatchEmbedFn:
    """``(batch, device) -> (B, D)`` from a grid encoder's ``forward_grid`` on ``grid_batch(batch, device)``
    (metadata included): the normalized CLS token (``cls``) or the mean of the valid grid tokens (``avg``)."""
    if pool not in ("cls", "avg"):
        raise ValueError(f"unknown pooling {pool!r}; use 'cls' or 'avg'")

    def embed(batch: Mapping[str, Any], device: torch.device) -> torch.Tensor:
        grid = encoder.forward_grid(grid_batch(batch, device))
        return grid.prefix[:, 0] if pool == "cls" else grid.pool(grid.layout.names).tokens[:, 0]

    return embed


def as_embed_fn(model: nn.Module | EmbedFn, pool: str = "cls") -> nn.Module | EmbedFn:
    """Wrap an encoder (``forward_features`` + ``pool``) as an embedding module; other callables pass through."""
    if hasattr(model, "forward_features") and hasattr(model, "pool"):
        return EncoderEmbedding(model, pool)  # type: ignore[arg-type]
    return model


def dataset_size(loader: Any) -> int:
    """Samples in a DataLoader's dataset (0 when it has no sized dataset)."""
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if dataset is not None and hasattr(dataset, "__len__") else 0


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


@torch.no_grad()
def extract_features(
    model: nn.Module | EmbedFn | None,
    loader: Iterable[Mapping[str, Any]],
    device: str | torch.device = "auto",
    precision: str = "auto",
    pool: str = "cls",
    progress: bool | None = None,
    description: str = "features",
    embed_batch: BatchEmbedFn | None = None,
) -> FeatureSet:
    """Run ``model`` over every batch of ``loader`` without gradients and collect a :class:`FeatureSet`.

    An ``nn.Module`` is moved to the device and put in eval mode (its mode is restored afterwards); a plain
    callable receives images on the device and must handle its own model. ``embed_batch(batch, device)``,
    when given, replaces the image call (for models that need more of the batch than the images, e.g. an
    adapter's ``embed``); ``model`` is then only moved and switched to eval. bf16 autocast on CUDA.
    """
    if model is None and embed_batch is None:
        raise ValueError("give a model/embed_fn or an embed_batch function")
    device = select_device(device) if isinstance(device, str) else device
    autocast_precision = select_precision(device, precision)
    embed = as_embed_fn(model, pool) if model is not None else None
    was_training = None
    if isinstance(embed, nn.Module):
        was_training = embed.training
        embed.to(device).eval()
    features, labels, sample_ids = [], [], []
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    try:
        for batch in tqdm(loader, total=total, desc=description, disable=not _show_progress(progress), leave=False):
            for draw in batch.get("skipped", []):
                log.warning("left out of the features: %s: %s", draw.source, draw.reason)
            if "image" not in batch:  # every sample of this batch was bad
                continue
            with autocast(device, autocast_precision):
                if embed_batch is not None:
                    embedded = embed_batch(batch, device)
                else:
                    embedded = embed(batch["image"].to(device, non_blocking=True))  # type: ignore[misc]
            if embedded.ndim != 2:
                raise ValueError(f"embed_fn must return (B, D); got shape {tuple(embedded.shape)}")
            features.append(embedded.float().cpu())
            batch_labels = torch.as_tensor(batch["label"])
            labels.append(batch_labels.float() if batch_labels.ndim == 2 else batch_labels.long())
            ids = batch.get("sample_id")
            if ids is None:  # no ids in the batch: number the samples in loader order
                ids = range(len(sample_ids), len(sample_ids) + len(embedded))
            sample_ids.extend(str(i) for i in ids)
    finally:
        if isinstance(embed, nn.Module) and was_training:
            embed.train()
    if not features:
        raise ValueError("the loader yielded no batches")
    return FeatureSet(torch.cat(features).numpy(), torch.cat(labels).numpy(), sample_ids)


def cache_key(checkpoint_id: str, dataset_id: str, settings: Mapping[str, Any]) -> str:
    """Hex digest identifying one (checkpoint, dataset, settings) embedding run."""
    payload = json.dumps(
        {"checkpoint": checkpoint_id, "dataset": dataset_id, "settings": settings, "format": CACHE_FORMAT_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class FeatureCache:
    """Embeddings on disk: ``<key>.features.npy``, ``<key>.labels.npy`` and ``<key>.json`` (written last,
    so a half-written entry is never read)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        return (self.root / f"{key}.features.npy", self.root / f"{key}.labels.npy", self.root / f"{key}.json")

    def __contains__(self, key: str) -> bool:
        return all(p.is_file() for p in self._paths(key))

    def load(self, key: str) -> FeatureSet | None:
        """The cached entry, or None when absent or unreadable."""
        if key not in self:
            return None
        features_path, labels_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            return FeatureSet(
                np.load(features_path, allow_pickle=False),
                np.load(labels_path, allow_pickle=False),
                list(meta["sample_ids"]),
            )
        except (OSError, ValueError, KeyError) as err:
            log.warning("feature cache entry %s unreadable (%s); recomputing", key, err)
            return None

    def save(self, key: str, feature_set: FeatureSet, metadata: Mapping[str, Any] | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        features_path, labels_path, meta_path = self._paths(key)
        for path, array in ((features_path, feature_set.features), (labels_path, feature_set.labels)):
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, path)
        meta = {"sample_ids": feature_set.sample_ids, "metadata": dict(metadata or {}), "format": CACHE_FORMAT_VERSION}
        tmp = meta_path.with_name(f".{meta_path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(meta, sort_keys=True, default=str))
        os.replace(tmp, meta_path)


def cached_features(
    model: nn.Module | EmbedFn | None,
    loader: Iterable[Mapping[str, Any]],
    cache: FeatureCache | str | os.PathLike | None,
    checkpoint_id: str,
    dataset_id: str,
    settings: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    pool: str = "cls",
    progress: bool | None = None,
    embed_batch: BatchEmbedFn | None = None,
) -> FeatureSet:
    """:func:`extract_features`, or the cached result for the same (checkpoint, dataset, settings).

    ``settings`` should hold everything that changes the embeddings besides weights and data (input size,
    normalization, pooling); ``pool`` is added to it. With ``cache=None`` nothing is stored.
    """
    settings = {**dict(settings or {}), "pool": pool}
    if cache is None:
        return extract_features(model, loader, device, precision, pool, progress, dataset_id, embed_batch)
    cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
    key = cache_key(checkpoint_id, dataset_id, settings)
    found = cache.load(key)
    if found is not None:
        log.info("feature cache hit %s (%s on %s)", key, checkpoint_id, dataset_id)
        return found
    feature_set = extract_features(model, loader, device, precision, pool, progress, dataset_id, embed_batch)
    cache.save(key, feature_set, {"checkpoint": checkpoint_id, "dataset": dataset_id, "settings": settings})
    return feature_set
