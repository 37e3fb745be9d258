"""Online kNN during pretraining (``engine.online_knn``): every N steps, embed a small labelled set with
the current encoder and log the weighted kNN top-1 accuracy (cosine, ``k``, temperature ``T``; the same
classifier as the ``knn`` evaluation protocol, :mod:`mae_domains.labelled.weighted_knn`).

The labelled samples are read once, at start-up, with evaluation transforms (no augmentation) and the
run's normalization statistics, and kept in memory. An evaluation runs in eval mode without gradients,
inside forked RNG states (torch CPU and accelerator, NumPy, ``random``), so it draws nothing from the
training streams: a run with online kNN trains exactly as one without, and resumes exactly.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from mae_domains.config import ConfigError, OnlineKnnSettings
from mae_domains.data.loaders import evaluation_loader
from mae_domains.data.sample import NormStats
from mae_domains.device import autocast
from mae_domains.labelled.weighted_knn import knn_accuracy
from mae_domains.labelled.label_lists import LabelledRefs, encode_labels, read_labelled
from mae_domains.shards import prepared_reader

log = logging.getLogger("mae_domains.engine")
WHERE = "engine.online_knn"


@dataclass
class LabelledBatches:
    """Ready batches (CPU) of one split and their class indices, in order."""

    batches: list[dict[str, Any]]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def split_sources(adapter: Any, settings: OnlineKnnSettings) -> tuple[LabelledRefs, LabelledRefs]:
    """Train and test references: the two source lists, or the ``split`` column of the train lists."""
    try:
        train = read_labelled(adapter, settings.train)
        test = read_labelled(adapter, settings.test) if settings.test else None
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"{WHERE}: {err}") from None
    if test is None:
        if not any(s == "test" for s in train.splits):
            raise ConfigError(f"{WHERE}.test is not set and the train sources have no 'test' split column rows; "
                              "give test sources or a CSV label list with a split column")
        train, test = train.split("train"), train.split("test")
    for name, refs in (("train", train), ("test", test)):
        if not refs.refs:
            raise ConfigError(f"{WHERE}.{name}: no labelled samples found")
    return train, test


def read_batches(adapter: Any, refs: LabelledRefs, labels: list[Any], stats: NormStats, batch_size: int,
                 split: str) -> LabelledBatches:
    """All samples of one split as evaluation batches; unreadable samples are left out and counted."""
    loader = evaluation_loader(prepared_reader(adapter, refs.refs), refs.refs, stats, batch_size=batch_size, labels=labels, train=False,
                               skip_bad=True)
    batches, kept, skipped = [], [], 0
    for batch in loader:
        skipped += len(batch.get("skipped", []))
        if "label" not in batch:
            continue
        batches.append(batch)
        kept.append(torch.as_tensor(batch["label"]).long().reshape(-1))
    if not batches:
        raise ConfigError(f"{WHERE}.{split}: none of the {len(refs.refs)} samples could be read")
    if skipped:
        log.warning("online kNN: %d unreadable %s samples left out", skipped, split)
    return LabelledBatches(batches, torch.cat(kept))


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Run a block without touching the RNG streams of the training (torch, accelerator, NumPy, random)."""
    devices = [device] if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class OnlineKnn:
    """The labelled set of a run and its periodic kNN evaluation."""

    def __init__(self, settings: OnlineKnnSettings, adapter: Any, stats: NormStats) -> None:
        self.settings = settings
        self.adapter = adapter
        train, test = split_sources(adapter, settings)
        multilabel = any(isinstance(label, (tuple, list)) for label in train.labels + test.labels)
        if multilabel:
            raise ConfigError(f"{WHERE}: top-1 accuracy needs one label per sample; the sources have multi-label rows")
        try:
            train_labels, test_labels, self.classes, _ = encode_labels(train.labels, test.labels, multilabel=False,
                                                                      where=WHERE)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.train = read_batches(adapter, train, train_labels, stats, settings.batch_size, "train")
        self.test = read_batches(adapter, test, test_labels, stats, settings.batch_size, "test")
        log.info("online kNN every %d steps: %d train / %d test samples, %d classes, k=%d, T=%g, %s pooling",
                 settings.every, len(self.train), len(self.test), len(self.classes), settings.k,
                 settings.temperature, settings.pool)

    @classmethod
    def from_config(cls, settings: OnlineKnnSettings, adapter: Any, stats: NormStats) -> "OnlineKnn | None":
        return cls(settings, adapter, stats) if settings.every else None

    def due(self, step: int, total: int) -> bool:
        """Every ``every`` steps and at the last step."""
        return step % self.settings.every == 0 or step == total

    def embed(self, model: nn.Module, split: LabelledBatches, device: torch.device, precision: Any) -> torch.Tensor:
        out = []
        for batch in split.batches:
            with autocast(device, precision):
                features = self.adapter.embed(model, batch, device, self.settings.pool)
            out.append(features.float())
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device, precision: Any) -> float:
        """kNN top-1 accuracy of ``model``'s encoder now; the model's train/eval mode is restored."""
        was_training = model.training
        model.eval()
        try:
            with isolated_rng(device):
                train = self.embed(model, self.train, device, precision)
                test = self.embed(model, self.test, device, precision)
                return knn_accuracy(train, self.train.labels.to(device), test, self.test.labels.to(device),
                                    self.settings.k, self.settings.temperature, device=device)
        finally:
            model.train(was_training)
