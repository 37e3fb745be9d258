"""The Python API for notebooks and scripts: load a run or export, normalize images the way the run did,
embed them. Also importable from the package top level (``mae_domains.load_model``, ``mae_domains.embed``,
``mae_domains.preprocess``)::

    import mae_domains
    model = mae_domains.load_model("runs/xray")              # run folder, checkpoint, export or hf-hub:<id>
    features = mae_domains.embed(model, images)              # (B, D) CLS embeddings of a (B, C, H, W) batch
    features = mae_domains.embed(model, ["a.dcm", "b.dcm"])  # or files, read as the adapter reads them
    tokens = model.encoder.forward_features(mae_domains.preprocess(model, images))  # (B, 1 + N, D)

Arrays and tensors hold values as the adapter reads its files (``mae-domains inspect`` shows them; the
image adapters scale 8/16-bit pixels to [0, 1]); :func:`preprocess` applies the run's per-channel
normalization. Files go through the adapter's own reading and evaluation transform, metadata included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from mae_domains.runs.model import LoadedModel, load_model

__all__ = ["load_model", "preprocess", "embed", "LoadedModel"]

Images = torch.Tensor | np.ndarray | Sequence[np.ndarray] | Sequence[torch.Tensor]
Files = str | Path | Sequence[str | Path]


def _is_files(images: Any) -> bool:
    if isinstance(images, (str, Path)):
        return True
    return isinstance(images, (list, tuple)) and bool(images) and all(isinstance(i, (str, Path)) for i in images)


def _as_batch_tensor(images: Images) -> torch.Tensor:
    """A float32 CPU tensor with the samples along the first axis (a list of arrays is stacked)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given")
        images = np.stack([np.asarray(i.detach().cpu() if isinstance(i, torch.Tensor) else i) for i in images])
    tensor = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    return tensor.float()


def preprocess(model: LoadedModel, images: Images) -> torch.Tensor:
    """``images`` normalized with the run's per-channel mean and std: a batch ``(B, C, ...)`` (a time
    series ``(B, T, C, H, W)``) of values as the adapter reads them, or a list of such samples. The channel
    count must be the run's. Without statistics (a run that normalizes per sample), the values are returned
    as float32."""
    batch = _as_batch_tensor(images)
    stats = model.stats
    if stats is None:
        return batch
    channel_axis = 2 if batch.ndim == 5 and getattr(model.adapter, "mask_axis", None) == "time" else 1  # (B, T, C, H, W)
    if batch.ndim < 3 or batch.shape[channel_axis] != len(stats.mean):
        raise ValueError(f"images of shape {tuple(batch.shape)}: expected a batch with {len(stats.mean)} channels "
                         f"on axis {channel_axis} (the run's normalization statistics have {len(stats.mean)})")
    shape = [1] * batch.ndim
    shape[channel_axis] = -1
    mean = torch.tensor(stats.mean, dtype=torch.float32).reshape(shape)
    std = torch.tensor(stats.std, dtype=torch.float32).clamp_min(1e-6).reshape(shape)
    return (batch - mean) / std


def embed(model: LoadedModel, images: Images | Files, *, meta: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
          pool: str = "cls", batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
    """``(B, D)`` embeddings on the CPU, one per sample: the CLS token (``pool="cls"``) or the mean of the
    patch tokens (``"avg"``).

    ``images``: a batch ``(B, C, H, W)`` (``(B, 1, Z, Y, X)`` for a volume, ``(B, T, C, H, W)`` for a time
    series) or a list of samples, of values as the adapter reads them; normalized here unless
    ``normalize=False``. ``meta``: what the adapter reads besides pixels, one mapping for every sample or
    one per sample, e.g. ``{"channel_names": [...]}`` for ``microscopy.channel_agnostic``, ``{"gsd": [0.3, 0.3]}``
    (x, y metres per pixel) for ``remote_sensing.scale``, ``{"dates": [...]}`` for ``remote_sensing.temporal``. Or ``images`` is a
    file, a folder, a glob or a list of them: read and transformed as ``mae-domains embed`` does, every
    readable sample once, in order (unreadable ones are skipped with a warning)."""
    device = next(model.model.parameters()).device
    if _is_files(images):
        if meta is not None:
            raise ValueError("meta is read from the files; give it only with arrays or tensors")
        import logging

        from mae_domains.runs.embedding import embed_archive

        sources = [str(images)] if isinstance(images, (str, Path)) else [str(i) for i in images]
        result = embed_archive(model, sources, device, batch_size=batch_size, pool=pool)
        for skipped in result.skipped:
            logging.getLogger(__name__).warning("skipped %s: %s", skipped.source, skipped.reason)
        return torch.from_numpy(result.embeddings)
    batch = preprocess(model, images) if normalize else _as_batch_tensor(images)
    metas = None if meta is None else [dict(meta)] * batch.shape[0] if isinstance(meta, Mapping) else \
        [dict(m) for m in meta]
    if metas is not None and len(metas) != batch.shape[0]:
        raise ValueError(f"{len(metas)} meta entries for {batch.shape[0]} images")
    chunks = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            part = {"image": batch[rows]} if metas is None else {"image": batch[rows], "meta": metas[rows]}
            chunks.append(model.adapter.embed(model.model, part, device, pool).float().cpu())
    return torch.cat(chunks)
