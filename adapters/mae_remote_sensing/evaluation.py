"""Downstream data for the remote-sensing adapters; the protocols themselves are the shared, registered
ones (``knn``, ``linear_probe``, ``multilabel_map``, ``finetune``), run by ``mae_domains.evaluation``.

- :func:`labelled_loaders`: a EuroSAT-style archive (``class_name/*.tif``; the label is the parent folder)
  or a BigEarthNet-style manifest (``label`` column with ``;``-separated names: multi-label) as loaders
  of labelled batches, for example::

      data = labelled_loaders(adapter, [train_dir], [test_dir], stats)
      run_protocol("multilabel_map", data.train, data.test, encoder=model.encoder,
                   embed_batch=lambda batch, device: adapter.embed(model, batch, device, "cls"),
                   grid_batch=adapter.grid_batch, class_names=data.classes)

- :func:`embed_scenes`: one embedding per grid chip of whole scenes, each with its CRS and bounds.

Only the core is imported here (adapters sit below the evaluation package).
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


@dataclass
class LabelledLoaders:
    """Loaders of dict batches (``image``, ``valid``, ``label``, ``sample_id``, ``meta``) with evaluation
    transforms (centre crop, no flips); ``label`` is a class index or, when ``multilabel``, multi-hot."""

    train: DataLoader
    test: DataLoader
    classes: list[str]
    multilabel: bool


def labelled_loaders(adapter, train_sources: Sequence[str | Path], test_sources: Sequence[str | Path],
                     stats: NormStats | None, batch_size: int = 64, num_workers: int = 0) -> LabelledLoaders:
    """Both splits of a labelled archive as loaders, labels from the adapter (folder or manifest)."""
    splits = labelled_splits(adapter, train_sources, test_sources)
    seed = int(adapter.config.engine.seed)

    def loader(refs: list) -> DataLoader:
        dataset = ArchiveDataset(adapter, refs, stats, train=False, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          collate_fn=collate_items)

    return LabelledLoaders(loader(splits.train_refs), loader(splits.test_refs), splits.classes, adapter.multilabel)


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
