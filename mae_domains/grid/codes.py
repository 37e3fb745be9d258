"""Positional and identity codes for token grids, computed per batch from metadata.

Widths are fractions of the model width, never constants: :func:`split_width` turns weights into even
widths that sum exactly to the total, so every preset works (ViT-Ti 192, ViT-L 1024, ViT-H 1280, a
decoder of 512) without needing the width to be divisible by 6. Sin-cos is computed in float64 and
returned in float32 (scaled positions lose precision in fp16).

Hooks for extra codes (band group, channel, date, scale) are plain functions: compute a per-index code
``(B, extent, w)`` for one axis, spread it over the tokens with :func:`expand_along_axis`, then
:func:`add_codes` or :func:`concat_codes` it with the position code.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mae_domains.grid.axes import GridLayout
from mae_domains.grid.pos_embed import sincos_1d

UNKNOWN_NAME = "<unknown>"


def split_width(total: int, weights: Sequence[float], multiple: int = 2) -> list[int]:
    """Split ``total`` channels in proportion to ``weights`` into parts that are multiples of ``multiple``.

    Parts are rounded down; the leftover goes, one ``multiple`` at a time, to the parts that lost the
    most. ``split_width(1024, [6, 6, 4], 2) == [384, 384, 256]`` (Prithvi's sixteenths),
    ``split_width(1024, [1, 1, 1]) == [342, 342, 340]``.
    """
    if total % multiple:
        raise ValueError(f"width {total} is not a multiple of {multiple}")
    if not weights or min(weights) <= 0:
        raise ValueError(f"weights must be positive, got {list(weights)}")
    units = total // multiple
    if units < len(weights):
        raise ValueError(f"width {total} is too small to give {len(weights)} parts of at least {multiple}")
    share = [units * w / sum(weights) for w in weights]
    parts = [max(1, int(s)) for s in share]
    while sum(parts) < units:
        i = max(range(len(parts)), key=lambda k: share[k] - parts[k])
        parts[i] += 1
    while sum(parts) > units:
        i = max(range(len(parts)), key=lambda k: parts[k] - share[k])
        parts[i] -= 1
    return [p * multiple for p in parts]


def fraction_width(total: int, fraction: float, multiple: int = 4) -> int:
    """``fraction`` of ``total`` rounded to a multiple of ``multiple`` (at least one multiple, leaving
    at least one multiple for the rest): SatMAE's 256 of 1024 is ``fraction_width(1024, 0.25)``."""
    units = total // multiple
    return multiple * min(max(1, round(units * fraction)), units - 1)


def sincos_positions(dim: int, positions: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Sin-cos code of multi-axis positions ``(..., A)`` -> ``(..., dim)``.

    Axes are encoded last-first, so for ``(y, x)`` the first half codes x and the second y, exactly the
    original MAE table. ``weights`` set each axis's share of the width (equal by default).
    """
    num_axes = positions.shape[-1]
    widths = split_width(dim, weights or [1.0] * num_axes, multiple=2)
    parts = [sincos_1d(w, positions[..., a]) for w, a in zip(widths, reversed(range(num_axes)))]
    return torch.cat(parts, dim=-1)


def spatial_codes(
    layout: GridLayout,
    dim: int,
    scale: torch.Tensor | None = None,
    weights: Sequence[float] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sin-cos code of the spatial axes of ``layout`` for every token: ``(B or 1, N, dim)``.

    ``scale`` ``(B, S)`` (one factor per spatial axis, e.g. GSD or voxel spacing relative to a
    reference) multiplies the integer positions per sample; ``None`` gives the unscaled MAE code.
    Non-spatial axes get no position (the same code along them).
    """
    names = layout.spatial_names
    if not names:
        raise ValueError(f"grid with axes {layout.names} has no spatial axis")
    coords = torch.stack([layout.coordinates(n, device=device) for n in names], dim=-1).to(torch.float64)
    coords = coords.unsqueeze(0)  # (1, N, S)
    if scale is not None:
        scale = torch.as_tensor(scale, dtype=torch.float64, device=device)
        if scale.ndim == 1:
            scale = scale.unsqueeze(-1).expand(-1, len(names))
        if scale.shape[-1] != len(names):
            raise ValueError(f"scale has {scale.shape[-1]} factors for spatial axes {names}")
        coords = coords * scale.unsqueeze(1)
    return sincos_positions(dim, coords, weights)


def grid_index_codes(layout: GridLayout, dim: int, weights: Sequence[float] | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Sin-cos code of every axis's integer index (spatial or not) for every token: ``(1, N, dim)``.

    Axes are coded last-first as in :func:`sincos_positions`; for a ``(time, y, x)`` grid,
    ``weights=(6, 6, 4)`` gives x 6/16, y 6/16 and the frame index 4/16 of the width: Prithvi's
    ``get_3d_sincos_pos_embed`` table (exact when ``dim`` is a multiple of 16).
    """
    coords = layout.all_coordinates(device=device).to(torch.float64).unsqueeze(0)
    return sincos_positions(dim, coords, weights)


def index_codes(dim: int, size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Fixed 1D sin-cos code of indices ``0..size-1`` -> ``(1, size, dim)`` (SatMAE's group code)."""
    return sincos_1d(dim, torch.arange(size, device=device, dtype=torch.float64)).unsqueeze(0)


def value_codes(dim: int, values: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Code of continuous values ``(B, T, K)`` (e.g. year, month, hour of each date) -> ``(B, T, dim)``;
    each of the K components gets its share of the width (SatMAE splits its date code in three)."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if values.ndim == 2:
        values = values.unsqueeze(-1)
    k = values.shape[-1]
    widths = split_width(dim, weights or [1.0] * k, multiple=2)
    return torch.cat([sincos_1d(w, values[..., i]) for i, w in enumerate(widths)], dim=-1)


def expand_along_axis(per_index: torch.Tensor, layout: GridLayout, axis: str) -> torch.Tensor:
    """Spread a per-index code ``(B, extent, w)`` along axis ``axis`` to every token: ``(B, N, w)``."""
    extent = layout.axis(axis).size
    if per_index.shape[-2] != extent:
        raise ValueError(f"code has {per_index.shape[-2]} rows for axis {axis!r} of size {extent}")
    idx = layout.coordinates(axis, device=per_index.device)
    return per_index.index_select(-2, idx)


def add_codes(*codes: torch.Tensor) -> torch.Tensor:
    """Sum of codes of equal width (batch dimensions broadcast)."""
    out = codes[0]
    for c in codes[1:]:
        out = out + c
    return out


def concat_codes(*codes: torch.Tensor) -> torch.Tensor:
    """Codes of partial widths side by side (batch dimensions broadcast): SatMAE's position ++ group."""
    batch = max(c.shape[0] for c in codes)
    return torch.cat([c.expand(batch, -1, -1) for c in codes], dim=-1)


class NameVocabulary:
    """Fixed name -> row mapping for nominal axes; row 0 is the fallback for names never registered."""

    def __init__(self, names: Sequence[str]) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {list(names)}")
        self.names = tuple(names)
        self._rows = {name: i + 1 for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names) + 1

    def rows(self, names: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
        """Rows of ``names`` (unknown names -> 0) as an int64 tensor."""
        return torch.tensor([self._rows.get(n, 0) for n in names], dtype=torch.int64, device=device)


class NamedCodeTable(nn.Module):
    """Learned code per *name* (not per index), with a shared fallback row for unknown names."""

    def __init__(self, vocabulary: NameVocabulary | Sequence[str], dim: int) -> None:
        super().__init__()
        self.vocabulary = vocabulary if isinstance(vocabulary, NameVocabulary) else NameVocabulary(vocabulary)
        self.table = nn.Embedding(len(self.vocabulary), dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, names: Sequence[str]) -> torch.Tensor:
        """``(1, len(names), dim)`` codes in the order of ``names``."""
        return self.table(self.vocabulary.rows(names, device=self.table.weight.device)).unsqueeze(0)
