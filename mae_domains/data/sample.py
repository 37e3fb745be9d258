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


@dataclass
class SampleSummary:
    """Per-channel summaries of one sample's valid pixels (float64)."""

    source: str
    n: int
    mean: np.ndarray
    m2: np.ndarray
    median: np.ndarray
    spread: np.ndarray  # 99th minus 1st percentile


class RunningStats:
    """Per-channel mean/std over valid pixels, one :meth:`update` per sample, robust to poisoned samples.

    Each sample keeps its count, mean and sum of squared deviations (exact, float64) and robust summaries
    (median, 1st-99th percentile spread). :meth:`result` takes the archive's location ``L`` (median of
    the sample medians) and scale ``S`` (median spread + median absolute deviation of the medians), and
    rejects a sample whose mean lies more than ``reject_scales * S`` from ``L`` or whose std exceeds
    ``reject_scales * S`` in any channel (a fill value of -3.4e38 or -9999 that slipped through, another
    unit); the others are pooled exactly (Chan et al.). Rejections are listed in ``rejected``. NaN, Inf
    and values of magnitude >= 1e30 (float fill) are never counted.
    """

    HUGE = 1e30
    QUANTILE_PIXELS = 65536  # robust summaries from at most this many pixels per sample (strided)

    def __init__(self, channels: int, reject_scales: float = 20.0) -> None:
        self.channels = channels
        self.reject_scales = reject_scales
        self.samples: list[SampleSummary] = []
        self.rejected: list[tuple[str, str]] = []

    def update(self, image: np.ndarray, valid: np.ndarray | None = None, source: str = "") -> None:
        """Add one sample ``(C, ...)``; ``valid`` (bool, the spatial shape) marks the pixels to count."""
        flat = image.reshape(image.shape[0], -1).astype(np.float64)
        with np.errstate(invalid="ignore"):
            keep = (np.isfinite(flat) & (np.abs(flat) < self.HUGE)).all(axis=0)
        if valid is not None:
            keep &= valid.reshape(-1)
        if not keep.all():
            flat = flat[:, keep]
        n = flat.shape[1]
        if n == 0:
            return
        mean = flat.mean(axis=1)
        m2 = ((flat - mean[:, None]) ** 2).sum(axis=1)
        sub = flat[:, :: max(1, n // self.QUANTILE_PIXELS)]
        q01, q50, q99 = np.quantile(sub, [0.01, 0.5, 0.99], axis=1)
        self.samples.append(SampleSummary(source or f"sample {len(self.samples)}", n, mean, m2, q50, q99 - q01))

    def _accepted(self) -> list[SampleSummary]:
        medians = np.stack([s.median for s in self.samples])
        location = np.median(medians, axis=0)
        spread = np.median(np.stack([s.spread for s in self.samples]), axis=0)
        scale = spread + np.median(np.abs(medians - location), axis=0)
        scale = np.maximum(scale, np.maximum(1e-2 * np.abs(location), 1e-6))
        limit = self.reject_scales * scale
        accepted, self.rejected = [], []
        for s in self.samples:
            std = np.sqrt(s.m2 / s.n)
            far = np.abs(s.mean - location) > limit
            wide = std > limit
            if far.any() or wide.any():
                c = int(np.argmax(far | wide))
                self.rejected.append((s.source, f"channel {c}: mean {s.mean[c]:.4g}, std {std[c]:.4g}, while the "
                                                f"archive's samples centre on {location[c]:.4g} with a spread of "
                                                f"{scale[c]:.4g}; values far outside the archive's range (a fill "
                                                f"value that is not declared as nodata?)"))
            else:
                accepted.append(s)
        return accepted

    def result(self, count: int | None = None, channel_names: list[str] | None = None) -> NormStats:
        """Pooled mean/std of the accepted samples; ``count`` (default: the accepted samples) is recorded,
        less the rejected ones. Raises ``ValueError`` when no sample is left."""
        if not self.samples:
            raise ValueError("no valid pixels to compute normalization statistics from")
        accepted = self._accepted()
        if not accepted:
            raise ValueError("every sample was rejected as an outlier: " +
                             "; ".join(f"{src}: {why}" for src, why in self.rejected[:3]))
        n = np.array([s.n for s in accepted], np.float64)
        means = np.stack([s.mean for s in accepted])
        mean = (n[:, None] * means).sum(axis=0) / n.sum()
        m2 = sum(s.m2 + s.n * (s.mean - mean) ** 2 for s in accepted)
        std = np.sqrt(m2 / n.sum())
        used = len(accepted) if count is None else max(0, int(count) - len(self.rejected))
        return NormStats(mean.tolist(), std.tolist(), used, channel_names)
