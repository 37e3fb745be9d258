"""The ``volume_probe`` protocol: one embedding per volume (the mean of its crops' pooled embeddings, frozen
encoder), then a logistic-regression probe scored by top-1 accuracy and macro F1.

Batches hold whole volumes (``image`` ``(1, C, Z, Y, X)``, ``label`` class index, ``meta`` with the
``spacing``); :class:`VolumeLoader` makes them from ``(reference, class)`` pairs through an adapter's
``read``. Crops tile the volume (``roi`` side, ``stride``; the last crop of an axis is aligned to its end,
volumes smaller than ``roi`` are padded and the padding is invalid).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from mae_domains.data.sample import BadSampleError
from mae_domains.device import select_device
from mae_domains.grid import GridBatch
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult

log = logging.getLogger(__name__)


class VolumeLoader:
    """Batches of one whole volume and its class from ``items`` ``(reference, class index)``; unreadable
    volumes are skipped, logged and listed in ``skipped``."""

    def __init__(self, reader: Any, items: Sequence[tuple[Any, int]]) -> None:
        self.reader = reader
        self.items = list(items)
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = []
        for ref, label in self.items:
            try:
                sample = self.reader(ref)
            except BadSampleError as err:
                log.warning("volume_probe: skipping %s", err)
                self.skipped.append((err.source, err.reason))
                continue
            yield {"image": torch.from_numpy(np.ascontiguousarray(sample.image, np.float32))[None],
                   "label": torch.tensor([int(label)]), "meta": [sample.meta], "sample_id": [sample.source]}


def crop_starts(size: int, roi: int, stride: int) -> list[int]:
    """Crop origins along one axis covering ``size`` (the last aligned to the end); ``[0]`` when smaller."""
    if size <= roi:
        return [0]
    starts = list(range(0, size - roi + 1, stride))
    return starts if starts[-1] == size - roi else starts + [size - roi]


@torch.no_grad()
def volume_embedding(encoder: torch.nn.Module, image: torch.Tensor, spacing: Sequence[float] | None, roi: int,
                     stride: int, batch_size: int = 4) -> torch.Tensor:
    """Mean over the crops of ``image`` ``(C, Z, Y, X)`` of each crop's average valid-token embedding."""
    device = next(encoder.parameters()).device
    c, *shape = image.shape
    pads = [max(0, roi - s) for s in shape]
    valid = torch.ones(shape, dtype=torch.bool)
    if any(pads):
        pad = [q for p in reversed(pads) for q in (0, p)]
        image = torch.nn.functional.pad(image, pad)
        valid = torch.nn.functional.pad(valid, pad, value=False)
    origins = [(z, y, x) for z in crop_starts(image.shape[1], roi, stride)
               for y in crop_starts(image.shape[2], roi, stride) for x in crop_starts(image.shape[3], roi, stride)]
    pooled = []
    for i in range(0, len(origins), batch_size):
        chunk = origins[i:i + batch_size]
        crops = torch.stack([image[:, z:z + roi, y:y + roi, x:x + roi] for z, y, x in chunk]).to(device)
        masks = torch.stack([valid[z:z + roi, y:y + roi, x:x + roi] for z, y, x in chunk]).to(device)
        meta = {} if spacing is None else {
            "spacing": torch.tensor([list(spacing)] * len(chunk), dtype=torch.float64, device=device)}
        grid = encoder.forward_grid(GridBatch(crops, masks, meta))
        pooled.append(grid.pool(grid.layout.names).tokens[:, 0].float().cpu())
    return torch.cat(pooled).mean(0)


def embed_volumes(encoder: torch.nn.Module, loader: Any, roi: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for batch in loader:
        metas = batch.get("meta") or [{}] * batch["image"].shape[0]
        for i in range(batch["image"].shape[0]):
            spacing = metas[i].get("spacing") if isinstance(metas[i], Mapping) else None
            features.append(volume_embedding(encoder, batch["image"][i], spacing, roi, stride).numpy())
            labels.append(int(batch["label"][i]))
    return np.stack(features), np.asarray(labels)


class VolumeProbeProtocol(EvaluationProtocol):
    name = "volume_probe"
    description = "Per-volume classification from the mean of pooled crop embeddings (logistic regression)."

    def defaults(self) -> dict[str, Any]:
        return {"roi": 96, "stride": 96, "c": 1.0, "max_iter": 2000}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        if context.encoder is None:
            raise ValueError("volume_probe needs an encoder")
        s = context.settings
        encoder = context.encoder.to(select_device(context.device)).eval()
        train_x, train_y = embed_volumes(encoder, context.train, int(s["roi"]), int(s["stride"]))
        test_x, test_y = embed_volumes(encoder, context.test, int(s["roi"]), int(s["stride"]))
        scaler = StandardScaler().fit(train_x)
        probe = LogisticRegression(C=float(s["c"]), max_iter=int(s["max_iter"]), random_state=context.seed)
        probe.fit(scaler.transform(train_x), train_y)
        pred = probe.predict(scaler.transform(test_x))
        summary = {"top1": float(np.mean(pred == test_y)),
                   "macro_f1": float(f1_score(test_y, pred, average="macro", zero_division=0))}
        return ProtocolResult(summary=summary, n_train=len(train_y), n_test=len(test_y),
                              details={"train_features": train_x, "test_features": test_x})
