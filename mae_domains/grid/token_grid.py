"""TokenGrid: tokens ``(B, N, D)`` laid out on named axes, with codes, validity and prefix tokens.

Tokens are row-major over ``layout.axes``. Prefix tokens (CLS, registers) live outside the grid in
``prefix``. A grid may hold only a subset of its tokens (the visible ones after masking): then ``ids``
``(B, K)`` says which grid positions the ``K`` tokens occupy. Gather, scatter and pooling are tensor
operations (no Python loops over samples or tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from mae_domains.grid.axes import GridLayout


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows ``ids`` ``(B, K)`` of ``x`` ``(B, N, ...)`` -> ``(B, K, ...)``; ``x`` may have batch 1."""
    if x.shape[0] != ids.shape[0]:
        x = x.expand(ids.shape[0], *x.shape[1:])
    index = ids.reshape(*ids.shape, *([1] * (x.ndim - 2))).expand(*ids.shape, *x.shape[2:])
    return torch.gather(x, 1, index)


def scatter_tokens(values: torch.Tensor, ids: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Put ``values`` ``(B, K, ...)`` at grid positions ``ids`` ``(B, K)`` of ``base`` ``(B or 1, N, ...)``;
    the other positions keep ``base`` (e.g. a mask token or zeros). Differentiable in both."""
    b = values.shape[0]
    base = base.expand(b, *base.shape[1:]).to(values.dtype)
    index = ids.reshape(*ids.shape, *([1] * (values.ndim - 2))).expand(*ids.shape, *values.shape[2:])
    return torch.scatter(base, 1, index, values)


@dataclass
class TokenGrid:
    """Tokens of one batch and the grid they live on.

    ``codes`` is the per-token code at the tokens' width (already added to ``tokens`` when
    ``codes_added``); ``code_fn(width)`` recomputes codes at any width, e.g. the decoder's.
    ``valid`` ``(B, N)`` is False for tokens that hold no data (nodata, outside an ultrasound fan).
    """

    tokens: torch.Tensor
    layout: GridLayout
    codes: torch.Tensor | None = None
    codes_added: bool = True
    code_fn: Callable[[int], torch.Tensor] | None = None
    valid: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    prefix: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def dim(self) -> int:
        return self.tokens.shape[-1]

    @property
    def num_tokens(self) -> int:
        """Tokens held (K for a subset, N for the full grid)."""
        return self.tokens.shape[1]

    @property
    def num_prefix_tokens(self) -> int:
        return 0 if self.prefix is None else self.prefix.shape[1]

    @property
    def is_full(self) -> bool:
        return self.ids is None

    def codes_at(self, width: int) -> torch.Tensor:
        """Codes of all N grid positions at ``width`` channels: ``(B or 1, N, width)``."""
        if self.codes is not None and self.codes.shape[-1] == width and self.is_full:
            return self.codes
        if self.code_fn is None:
            raise ValueError(f"this grid has no codes at width {width}")
        return self.code_fn(width)

    def with_prefix(self, prefix: torch.Tensor | None) -> "TokenGrid":
        return replace(self, prefix=prefix)

    def sequence(self) -> torch.Tensor:
        """Prefix tokens followed by grid tokens: ``(B, P + K, D)`` (what the transformer sees)."""
        if self.prefix is None:
            return self.tokens
        return torch.cat([self.prefix.expand(self.batch_size, -1, -1), self.tokens], dim=1)

    def replace_sequence(self, sequence: torch.Tensor) -> "TokenGrid":
        """A grid with new tokens (and prefix) from a transformer output over :meth:`sequence`."""
        p = self.num_prefix_tokens
        return replace(self, tokens=sequence[:, p:], prefix=sequence[:, :p] if p else None, codes=None,
                       codes_added=True)

    def gather(self, ids: torch.Tensor) -> "TokenGrid":
        """The subset of a full grid at positions ``ids`` ``(B, K)`` (e.g. the visible tokens)."""
        if not self.is_full:
            raise ValueError("gather needs a full grid; this one already holds a subset")
        codes = None if self.codes is None else gather_tokens(self.codes, ids)
        valid = None if self.valid is None else torch.gather(self.valid, 1, ids)
        return replace(self, tokens=gather_tokens(self.tokens, ids), codes=codes, valid=valid, ids=ids)

    def scatter(self, fill: torch.Tensor) -> "TokenGrid":
        """A full grid from a subset: held tokens at their positions, ``fill`` ``(D,)`` or ``(B|1, N, D)``
        elsewhere (a mask token, zeros)."""
        if self.is_full:
            return self
        n = self.layout.num_tokens
        base = fill.reshape(1, 1, -1).expand(1, n, -1) if fill.ndim == 1 else fill
        return replace(self, tokens=scatter_tokens(self.tokens, self.ids, base), ids=None, codes=None, valid=None)

    def dense(self) -> torch.Tensor:
        """Full grid as ``(B, *extents, D)``."""
        if not self.is_full:
            raise ValueError("dense needs a full grid; scatter the subset first")
        return self.tokens.reshape(self.batch_size, *self.layout.shape, self.dim)

    def pool(self, over: Sequence[str], mode: str = "mean") -> "TokenGrid":
        """Reduce the named axes (mean or max); e.g. ``pool(["channel"])`` gives one token per position
        with ``(y, x)`` axes left, ``pool(layout.names)`` one token per sample. Invalid tokens are left out
        of a mean."""
        axes = sorted(self.layout.index(n) for n in over)
        if not axes:
            return self
        dense = self.dense()
        reduce = [a + 1 for a in axes]
        rest = self.layout.without(over)
        if mode == "mean":
            if self.valid is not None:
                w = self.valid.reshape(self.batch_size, *self.layout.shape, 1).to(dense.dtype)
                pooled = (dense * w).sum(dim=reduce) / w.sum(dim=reduce).clamp_min(1.0)
            else:
                pooled = dense.mean(dim=reduce)
        elif mode == "max":
            pooled = dense.amax(dim=reduce)
        else:
            raise ValueError(f"unknown pooling {mode!r}; use 'mean' or 'max'")
        valid = None
        if self.valid is not None:
            valid = self.valid.reshape(self.batch_size, *self.layout.shape).amax(dim=reduce).reshape(self.batch_size, -1)
        return TokenGrid(tokens=pooled.reshape(self.batch_size, rest.num_tokens, self.dim), layout=rest,
                         valid=valid, prefix=self.prefix)
