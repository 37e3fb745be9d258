"""Fixed sine-cosine positional codes, computed in float32 (MAE convention).

``sincos_2d`` follows the original MAE code exactly: the first half of the channels encodes the
column (x) index and the second half the row (y) index, each as ``[sin(pos * w), cos(pos * w)]`` with
``w_k = 1 / 10000 ** (k / (D/4))``. Positions may be scaled by a physical spacing.
"""

from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sin-cos code of ``positions`` (any shape) with ``dim`` (even) channels -> ``(*shape, dim)``."""
    if dim % 2:
        raise ValueError(f"sin-cos code width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.to(torch.float64).unsqueeze(-1) * omega
    return torch.cat([torch.sin(out), torch.cos(out)], dim=-1).to(torch.float32)


def sincos_2d(
    dim: int,
    grid_hw: tuple[int, int],
    spacing: tuple[float, float] = (1.0, 1.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """2D code for a ``(rows, cols)`` grid in row-major token order -> ``(rows * cols, dim)``.

    ``spacing`` (row, col) multiplies the integer grid positions (e.g. a ground sample distance
    relative to a reference); ``(1, 1)`` reproduces MAE's table.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos code width must be divisible by 4, got {dim}")
    rows, cols = grid_hw
    ys = torch.arange(rows, dtype=torch.float64, device=device) * spacing[0]
    xs = torch.arange(cols, dtype=torch.float64, device=device) * spacing[1]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.cat([sincos_1d(dim // 2, xx.reshape(-1)), sincos_1d(dim // 2, yy.reshape(-1))], dim=-1)


def sincos_2d_with_prefix(dim: int, grid_hw: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """MAE's ``pos_embed`` table ``(1, prefix + rows * cols, dim)``: zero rows for CLS/register tokens."""
    table = sincos_2d(dim, grid_hw)
    prefix = torch.zeros(num_prefix_tokens, dim, dtype=table.dtype)
    return torch.cat([prefix, table], dim=0).unsqueeze(0)
