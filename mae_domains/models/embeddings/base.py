"""What every patch embedding provides: a token layout, per-token codes, projections and targets.

A :class:`GridEmbedding` turns a :class:`GridBatch` into a :class:`~mae_domains.grid.TokenGrid`. It also
cuts the *full-resolution* sample into per-token target patches in exactly the token order it embeds
(so a prediction and its target can never be in different band or channel orders), and inverts that
cut (:meth:`GridEmbedding.unpatchify`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from mae_domains.grid import GridLayout, TokenGrid, gather_tokens
from mae_domains.grid.batch import GridBatch, as_grid_batch, pixel_weights


def patches_2d(x: torch.Tensor, p: int, channel_last: bool = True) -> torch.Tensor:
    """``(B, S, C, H, W)`` -> ``(B, S*(H/p)*(W/p), p*p*C)``, slices first, then rows, then columns.

    ``channel_last`` gives MAE's (p, q, c) order inside a patch (targets); otherwise (c, p, q), the order
    of a conv weight, so a matmul with ``weight.view(D, -1)`` equals the strided conv."""
    b, s, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}")
    x = x.reshape(b, s, c, h // p, p, w // p, p)
    x = x.permute(0, 1, 3, 5, 4, 6, 2) if channel_last else x.permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, s * (h // p) * (w // p), p * p * c)


def unpatches_2d(patches: torch.Tensor, p: int, slices: int, grid_hw: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patches_2d` with ``channel_last``: -> ``(B, S, C, H, W)``."""
    b = patches.shape[0]
    gh, gw = grid_hw
    x = patches.reshape(b, slices, gh, gw, p, p, channels).permute(0, 1, 6, 2, 4, 3, 5)
    return x.reshape(b, slices, channels, gh * p, gw * p)


def project_patches(patches: torch.Tensor, proj: nn.Conv2d | nn.Conv3d) -> torch.Tensor:
    """Apply a strided patch conv to already-cut patches ``(B, K, C*prod(p))`` in (c, p, ...) order."""
    return F.linear(patches, proj.weight.reshape(proj.weight.shape[0], -1), proj.bias)


class GridEmbedding(nn.Module, ABC):
    """Base class. Subclasses implement :meth:`layout`, :meth:`codes`, :meth:`project`,
    :meth:`target_patches` and :meth:`unpatchify`; set ``route_axis`` when each index along an axis
    needs its own prediction head (band groups)."""

    embed_dim: int
    channel_dim: int = 1  # dimension of ``images`` that holds channels
    route_axis: str | None = None
    # a token is valid when more than this share of its pixels is valid
    min_valid_fraction: float = 0.0

    @abstractmethod
    def layout(self, batch: GridBatch) -> GridLayout:
        """The token layout for this batch (from image shape and metadata)."""

    @abstractmethod
    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        """Per-token codes ``(B or 1, N, width)`` at any width."""

    @abstractmethod
    def project(self, batch: GridBatch, layout: GridLayout, ids: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings without codes: all ``(B, N, D)``, or only positions ``ids`` ``(B, K)``."""

    @abstractmethod
    def target_patches(self, images: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        """Full-resolution images cut into per-token target vectors ``(B, N, P)`` in token order."""

    @abstractmethod
    def unpatchify(self, patches: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        """Inverse of :meth:`target_patches`."""

    @property
    @abstractmethod
    def target_dim(self) -> int:
        """Width ``P`` of one token's target vector."""

    @property
    def num_routes(self) -> int:
        return 1

    # ----- shared behaviour ------------------------------------------------------------------------
    def prepare_code_width(self, width: int) -> None:
        """Make codes available at ``width`` (e.g. the decoder's); only learned code tables need this."""

    def token_validity(self, batch: GridBatch, layout: GridLayout) -> torch.Tensor | None:
        """``(B, N)`` bool from the per-pixel mask, or None when the batch has none."""
        if batch.valid is None:
            return None
        weights = self.target_patches(pixel_weights(batch, batch.images, self.channel_dim), layout)
        share = weights.sum(-1) / self.target_weight_count(layout, weights.device).clamp_min(1.0)
        return share > self.min_valid_fraction

    def target_weight_count(self, layout: GridLayout, device: torch.device) -> torch.Tensor:
        """Number of real (non-padding) values per token target ``(N,)``; padding-free embeddings: P."""
        return torch.full((layout.num_tokens,), float(self.target_dim), device=device)

    def forward(self, batch: GridBatch | torch.Tensor, ids: torch.Tensor | None = None) -> TokenGrid:
        """Embed the batch (only positions ``ids`` when given) and add the codes."""
        batch = as_grid_batch(batch)
        layout = self.layout(batch)
        tokens = self.project(batch, layout, ids)
        codes = self.codes(batch, layout, self.embed_dim).to(device=tokens.device, dtype=tokens.dtype)
        if ids is not None:
            codes = gather_tokens(codes, ids)
        valid = self.token_validity(batch, layout)
        if ids is not None and valid is not None:
            valid = torch.gather(valid, 1, ids)
        return TokenGrid(
            tokens=tokens + codes, layout=layout, codes=codes, codes_added=True,
            code_fn=lambda width: self.codes(batch, layout, width).to(tokens.device), valid=valid, ids=ids,
        )
