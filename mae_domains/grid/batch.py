"""A collated batch as the grid models see it: pixels, validity, per-batch metadata, optional target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch


@dataclass
class GridBatch:
    """A collated batch: ``images`` channels-first, an optional per-pixel ``valid`` mask (False = nodata,
    spatial shape or the images' shape), batched metadata (``spacing`` (B, S), ``dates`` (B, T, K),
    ``channel_names`` list[str], ...) and an optional separate target image (e.g. the sharp image behind a
    blurred input, or a target at twice the input's resolution), with its own validity ``target_valid``
    where its resolution differs from the input's."""

    images: torch.Tensor
    valid: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    target_images: torch.Tensor | None = None
    target_valid: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    def select(self, rows: slice) -> "GridBatch":
        """The samples ``rows`` of the batch; per-sample metadata (tensors or lists with one entry per
        sample) is sliced too, shared metadata kept."""
        n = self.batch_size

        def cut(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n:
                return value[rows]
            if isinstance(value, (list, tuple)) and len(value) == n:
                return type(value)(value[rows])
            return value

        return GridBatch(self.images[rows], cut(self.valid), {k: cut(v) for k, v in self.meta.items()},
                         cut(self.target_images), cut(self.target_valid))

    def to(self, device: torch.device | str) -> "GridBatch":
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return GridBatch(move(self.images), move(self.valid), {k: move(v) for k, v in self.meta.items()},
                         move(self.target_images), move(self.target_valid))


def as_grid_batch(
    images: torch.Tensor | GridBatch | Mapping[str, Any],
    valid: torch.Tensor | None = None,
    meta: Mapping[str, Any] | None = None,
    target_images: torch.Tensor | None = None,
) -> GridBatch:
    """Accept a tensor, a :class:`GridBatch` or a collated dict (``image``/``images``, ``valid``,
    ``meta``, ``target``; other keys are taken as metadata)."""
    if isinstance(images, GridBatch):
        batch = images
    elif isinstance(images, Mapping):
        d = dict(images)
        img = d.pop("images", None)
        img = d.pop("image") if img is None else img
        nested = d.pop("meta", None) or {}
        pixel_valid, target = d.pop("valid", None), d.pop("target", None)
        batch = GridBatch(img, pixel_valid, {**nested, **d}, target)
    else:
        batch = GridBatch(images)
    if valid is not None:
        batch.valid = valid
    if meta:
        batch.meta = {**batch.meta, **meta}
    if target_images is not None:
        batch.target_images = target_images
    return batch


def pixel_weights(batch: GridBatch, images: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
    """Per-pixel validity as float weights with the shape of ``images`` (1 where no mask is given).

    The mask may have the images' shape, lack only the channel dimension (``channel_dim``), or be
    spatial only ``(B, *spatial)``; it is broadcast accordingly."""
    if batch.valid is None:
        return torch.ones_like(images, dtype=torch.float32)
    valid = batch.valid.to(device=images.device, dtype=torch.float32)
    if valid.ndim == images.ndim - 1:
        valid = valid.unsqueeze(channel_dim)
    elif valid.ndim < images.ndim:
        spatial = valid.shape[1:]
        valid = valid.reshape(valid.shape[0], *([1] * (images.ndim - 1 - len(spatial))), *spatial)
    return valid.expand_as(images).contiguous()
