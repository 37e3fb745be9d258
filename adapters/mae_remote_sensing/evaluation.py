"""Downstream hooks for the remote-sensing adapters, on top of :mod:`mae_domains.evaluation`.

- :func:`classification_records`: kNN (cosine, k=20, T=0.07) and a linear probe on an EuroSAT-style
  archive (``class_name/*.tif``; the label is the parent folder), or multi-label mAP / ROC-AUC on a
  BigEarthNet-style manifest (``label`` column with ``;``-separated names), as result records.
- :func:`embed_scenes`: one embedding per grid chip of whole scenes, each with its CRS and bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.data.sample import NormStats
from mae_domains.evaluation.features import FeatureSet, extract_features
from mae_domains.evaluation.knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_scores
from mae_domains.evaluation.linear_probe import LinearProbeConfig, linear_probe
from mae_domains.evaluation.metrics import classification_report
from mae_domains.evaluation.records import ResultRecord


def archive_features(adapter, model: torch.nn.Module, refs: Sequence[Any], stats: NormStats | None,
                     pool: str = "cls", batch_size: int = 64, num_workers: int = 0,
                     device: str | torch.device = "cpu") -> FeatureSet:
    """Embeddings of ``refs`` (evaluation transform: centre crop, no flips) through ``adapter.embed``."""
    dataset = ArchiveDataset(adapter, refs, stats, train=False, seed=int(adapter.config.engine.seed))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_items)
    return extract_features(model, loader, device=device, pool=pool, progress=False,
                            embed_batch=lambda batch, dev: adapter.embed(model, batch, dev, pool))


@dataclass
class LabelledSplits:
    train_refs: list
    test_refs: list
    classes: list[str]


def labelled_splits(adapter, train_sources: Sequence[str | Path], test_sources: Sequence[str | Path]) -> LabelledSplits:
    """Chip refs of both splits with one class list (the union of both splits' labels)."""
    train_refs = adapter.discover(train_sources)
    test_refs = adapter.discover(test_sources)
    adapter.set_classes([r.label for r in train_refs] + [r.label for r in test_refs])
    if not adapter.classes:
        raise ValueError("no labels found: use class_name/*.tif folders or a manifest with a 'label' column")
    return LabelledSplits(train_refs, test_refs, list(adapter.classes))


def classification_records(
    adapter, model: torch.nn.Module, train_sources: Sequence[str | Path], test_sources: Sequence[str | Path],
    stats: NormStats | None, dataset_name: str, checkpoint: str = "", protocols: Sequence[str] = ("knn", "linear_probe"),
    k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE, probe: LinearProbeConfig | None = None,
    pool: str = "cls", batch_size: int = 64, device: str | torch.device = "cpu", step: int | None = None,
) -> list[ResultRecord]:
    """kNN and linear-probe metrics (top-1, macro-F1, ROC-AUC; mAP for multi-label) as result records."""
    splits = labelled_splits(adapter, train_sources, test_sources)
    train = archive_features(adapter, model, splits.train_refs, stats, pool, batch_size, device=device)
    test = archive_features(adapter, model, splits.test_refs, stats, pool, batch_size, device=device)
    num_classes = len(splits.classes)
    records: list[ResultRecord] = []
    for protocol in protocols:
        if protocol == "knn":
            scores = knn_scores(train.features, train.labels, test.features, k, temperature, num_classes=num_classes,
                                device=device).numpy()
            settings: dict[str, Any] = {"k": k, "temperature": temperature, "pool": pool}
        elif protocol == "linear_probe":
            config = probe or LinearProbeConfig(epochs=100, batch_size=min(256, len(train)), device=str(device))
            scores = linear_probe(train.features, train.labels, test.features, config, num_classes).test_scores.numpy()
            settings = {**config.settings(), "pool": pool}
        else:
            raise ValueError(f"unknown protocol {protocol!r}; use 'knn' or 'linear_probe'")
        report = classification_report(scores, test.labels, splits.classes)
        base = dict(adapter=adapter.name, checkpoint=checkpoint, dataset=dataset_name, protocol=protocol,
                    settings=settings, n_train=len(train), n_test=len(test), step=step)
        records.extend(ResultRecord(metric=name, value=float(value), **base) for name, value in report.summary.items())
        for metric, values in report.per_class.items():
            records.extend(ResultRecord(metric=metric, value=v, class_name=c, **base) for c, v in values.items())
    return records


@dataclass
class SceneEmbeddings:
    """One row per chip: ``features`` ``(N, D)`` and where each chip lies (source, CRS, bounds, window)."""

    features: np.ndarray
    chips: list[dict[str, Any]]


@torch.no_grad()
def embed_scenes(adapter, model: torch.nn.Module, sources: Sequence[str | Path], stats: NormStats | None,
                 stride: int | None = None, pool: str = "cls", batch_size: int = 32,
                 device: str | torch.device = "cpu") -> SceneEmbeddings:
    """Embed whole scenes chip by chip on a strided grid (``stride`` pixels, default the chip size)."""
    previous = dict(adapter.options)
    adapter.options.update(sampling="grid", stride=stride)
    try:
        refs = adapter.discover(sources)
    finally:
        adapter.options.clear()
        adapter.options.update(previous)
    dataset = ArchiveDataset(adapter, refs, stats, train=False, seed=int(adapter.config.engine.seed))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_items)
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    features, chips = [], []
    try:
        for batch in loader:
            features.append(adapter.embed(model, batch, device, pool).float().cpu())
            chips.extend({"source": m["source"], "crs": m["crs"], "bounds": m["bounds"], "window": m["window"],
                          "gsd": m["gsd"], "dates": m["dates"]} for m in batch["meta"])
    finally:
        model.train(was_training)
    return SceneEmbeddings(torch.cat(features).numpy(), chips)
