"""What a reader returns: an array, its metadata, an optional validity mask and label."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class BadSampleError(ValueError):
    """A sample that cannot be used; the message names the file and the problem."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


@dataclass
class Sample:
    """One item of an archive, channels first: ``(C, H, W)`` for 2D, ``(C, D, H, W)`` for volumes.

    ``meta`` travels with the sample (source path, sample id, band/channel names, spacing, GSD,
    dates...); ``valid`` is a per-pixel bool mask (``False`` = nodata) with the spatial shape.
    """

    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    valid: np.ndarray | None = None
    label: Any = None

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "<memory>"))

    def check_finite(self) -> None:
        """Raise :class:`BadSampleError` if valid pixels hold NaN or Inf."""
        finite = np.isfinite(self.image)
        if self.valid is not None:
            finite |= ~self.valid[None] if self.valid.ndim == self.image.ndim - 1 else ~self.valid
        if not finite.all():
            raise BadSampleError(self.source, f"{int((~finite).sum())} NaN/Inf values outside the nodata mask")


@dataclass
class NormStats:
    """Per-channel mean and standard deviation, computed from the archive and saved with checkpoints."""

    mean: list[float]
    std: list[float]
    count: int = 0
    channel_names: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "count": self.count, "channel_names": self.channel_names}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NormStats":
        return cls(list(d["mean"]), list(d["std"]), int(d.get("count", 0)), d.get("channel_names"))

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """``(image - mean) / std`` over the first (channel) axis, in float32."""
        shape = (-1,) + (1,) * (image.ndim - 1)
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.maximum(np.asarray(self.std, np.float32), 1e-6).reshape(shape)
        return (image.astype(np.float32) - mean) / std


class RunningStats:
    """Streaming per-channel mean/variance (Chan et al. parallel update) over valid pixels, in float64."""

    def __init__(self, channels: int) -> None:
        self.n = np.zeros(channels)
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def update(self, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        flat = image.reshape(image.shape[0], -1).astype(np.float64)
        keep = np.isfinite(flat).all(axis=0)  # a NaN/Inf pixel must not poison the statistics
        if valid is not None:
            keep &= valid.reshape(-1)
        if not keep.all():
            flat = flat[:, keep]
        n_b = flat.shape[1]
        if n_b == 0:
            return
        mean_b = flat.mean(axis=1)
        m2_b = ((flat - mean_b[:, None]) ** 2).sum(axis=1)
        delta = mean_b - self.mean
        total = self.n + n_b
        self.mean = self.mean + delta * n_b / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / total
        self.n = total

    def result(self, count: int, channel_names: list[str] | None = None) -> NormStats:
        std = np.sqrt(self.m2 / np.maximum(self.n, 1))
        return NormStats(self.mean.tolist(), std.tolist(), count, channel_names)
