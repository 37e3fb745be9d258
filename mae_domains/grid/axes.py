"""Named grid axes and the layout of a token grid.

Tokens of every modality are laid out row-major over a tuple of axes, e.g. ``(y, x)`` for an X-ray,
``(z, y, x)`` for CT, ``(group, y, x)`` for Sentinel-2 band groups, ``(time, y, x)`` for a time series
and ``(channel, y, x)`` for Cell Painting. Each axis has a *kind* that says what its index means:

- ``spatial``: a position; ``spacing`` is the physical size of one token step (mm, m, um).
- ``ordinal``: an ordered index with a fixed meaning per position (band group 0, 1, 2).
- ``nominal``: identity comes from a *name* (``labels``), never from the index (microscopy channels).
- ``continuous``: a measured value per position (acquisition date, ground sample distance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Iterable, Sequence

import torch


class AxisKind(str, Enum):
    SPATIAL = "spatial"
    ORDINAL = "ordinal"
    NOMINAL = "nominal"
    CONTINUOUS = "continuous"


@dataclass(frozen=True)
class Axis:
    """One axis of a token grid: its name, kind, extent (tokens along it) and, where relevant,
    physical spacing per token (spatial) or labels (nominal, e.g. channel names)."""

    name: str
    kind: AxisKind
    size: int
    spacing: float = 1.0
    unit: str = ""
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"axis {self.name!r} must have at least one token, got {self.size}")
        if self.labels is not None and len(self.labels) != self.size:
            raise ValueError(f"axis {self.name!r} has {self.size} tokens but {len(self.labels)} labels")
        if self.kind is AxisKind.NOMINAL and self.labels is None:
            raise ValueError(f"nominal axis {self.name!r} needs labels: identity comes from names, not indices")

    def resized(self, size: int) -> "Axis":
        """The same axis with another extent (labels dropped when they no longer fit)."""
        labels = self.labels if self.labels is not None and len(self.labels) == size else None
        return replace(self, size=size, labels=labels)


def spatial_axis(name: str, size: int, spacing: float = 1.0, unit: str = "") -> Axis:
    return Axis(name, AxisKind.SPATIAL, size, spacing=spacing, unit=unit)


def ordinal_axis(name: str, size: int, labels: Sequence[str] | None = None) -> Axis:
    return Axis(name, AxisKind.ORDINAL, size, labels=tuple(labels) if labels is not None else None)


def nominal_axis(name: str, labels: Sequence[str]) -> Axis:
    return Axis(name, AxisKind.NOMINAL, len(labels), labels=tuple(labels))


def continuous_axis(name: str, size: int, unit: str = "") -> Axis:
    return Axis(name, AxisKind.CONTINUOUS, size, unit=unit)


@dataclass(frozen=True)
class GridLayout:
    """The axes of a token grid; token ``n`` sits at the row-major multi-index ``unravel(n, shape)``."""

    axes: tuple[Axis, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"axis names must be unique, got {names}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.shape)

    @property
    def spatial_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes if a.kind is AxisKind.SPATIAL)

    def __len__(self) -> int:
        return len(self.axes)

    def __iter__(self):
        return iter(self.axes)

    def index(self, name: str) -> int:
        """Position of axis ``name``; the error lists the known axes."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no axis {name!r} in grid with axes {self.names}") from None

    def axis(self, name: str) -> Axis:
        return self.axes[self.index(name)]

    def without(self, names: Iterable[str]) -> "GridLayout":
        drop = set(names)
        for n in drop:
            self.index(n)
        return GridLayout(tuple(a for a in self.axes if a.name not in drop))

    def signature(self) -> tuple:
        """Hashable summary (names, kinds, sizes, labels) used to bucket samples with equal grids."""
        return tuple((a.name, a.kind.value, a.size, a.labels) for a in self.axes)

    def coordinates(self, name: str, device: torch.device | str | None = None) -> torch.Tensor:
        """Index along axis ``name`` of every token, ``(N,)`` int64, in token order."""
        i = self.index(name)
        shape = self.shape
        inner = math.prod(shape[i + 1 :])
        return (torch.arange(self.num_tokens, device=device) // inner) % shape[i]

    def all_coordinates(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(N, num_axes)`` int64 multi-index of every token."""
        grids = torch.meshgrid(*[torch.arange(s, device=device) for s in self.shape], indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=-1)
