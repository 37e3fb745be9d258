"""3D cube patch embedding for volumes (CT, MRI): ``(B, C, Z, Y, X)`` -> grid ``(z, y, x)``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mae_domains.grid import GridLayout, spatial_axis, spatial_codes
from mae_domains.models.embeddings.base import GridBatch, GridEmbedding, project_patches
from mae_domains.models.embeddings.patch2d import init_patch_proj, position_scale


def to_3tuple(value: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    if len(value) != 3:
        raise ValueError(f"expected 3 patch sizes (z, y, x), got {value}")
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def patches_3d(x: torch.Tensor, patch: tuple[int, int, int], channel_last: bool = True) -> torch.Tensor:
    """``(B, C, Z, Y, X)`` -> ``(B, N, pz*py*px*C)``; tokens z-major; inside a patch (pz, py, px, c) with
    ``channel_last`` (targets) or (c, pz, py, px) (conv weight order)."""
    b, c, *size = x.shape
    for s, p in zip(size, patch):
        if s % p:
            raise ValueError(f"volume size {tuple(size)} is not divisible by patch size {patch}")
    g = [s // p for s, p in zip(size, patch)]
    x = x.reshape(b, c, g[0], patch[0], g[1], patch[1], g[2], patch[2])
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1) if channel_last else x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, g[0] * g[1] * g[2], -1)


def unpatches_3d(patches: torch.Tensor, patch: tuple[int, int, int], grid: tuple[int, int, int], channels: int) -> torch.Tensor:
    """Inverse of :func:`patches_3d` with ``channel_last``."""
    b = patches.shape[0]
    x = patches.reshape(b, *grid, *patch, channels).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, channels, *(g * p for g, p in zip(grid, patch)))


class CubePatchEmbed3D(GridEmbedding):
    """One ``Conv3d`` over ``patch_size`` cubes (16^3 on 96^3 crops gives 216 tokens).

    Code: 3D sin-cos with the width split over (x, y, z) by ``code_weights`` (equal thirds rounded to
    even widths by default, so any width works; ``(6, 6, 4)`` reproduces Prithvi's sixteenths for
    (z, y, x)), positions scaled per sample by ``meta["spacing"] / reference_spacing`` (voxel size in mm
    ordered z, y, x) when a reference spacing is given.
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int | Sequence[int] = 16,
        reference_spacing: Sequence[float] | None = None,
        code_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.patch_size = to_3tuple(patch_size)
        self.reference_spacing = None if reference_spacing is None else tuple(float(s) for s in reference_spacing)
        # weights are given as (z, y, x); sincos_positions encodes the last axis first
        self.code_weights = None if code_weights is None else tuple(reversed([float(w) for w in code_weights]))
        self.proj = nn.Conv3d(in_chans, embed_dim, self.patch_size, self.patch_size)
        init_patch_proj(self.proj)

    def layout(self, batch: GridBatch) -> GridLayout:
        size = batch.images.shape[-3:]
        for s, p in zip(size, self.patch_size):
            if s % p:
                raise ValueError(f"volume size {tuple(size)} is not divisible by patch size {self.patch_size}")
        return GridLayout(tuple(spatial_axis(n, s // p, spacing=float(p), unit="voxel")
                                for n, s, p in zip(("z", "y", "x"), size, self.patch_size)))

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        scale = position_scale(batch, self.reference_spacing, 3)
        device = batch.images.device
        return spatial_codes(layout, width, scale=None if scale is None else scale.to(device),
                             weights=self.code_weights, device=device)

    def project(self, batch: GridBatch, layout: GridLayout, ids: torch.Tensor | None) -> torch.Tensor:
        x = batch.images
        if x.shape[1] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} channels, got {x.shape[1]}")
        if ids is None:
            return self.proj(x).flatten(2).transpose(1, 2)
        patches = patches_3d(x, self.patch_size, channel_last=False)
        index = ids.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        return project_patches(torch.gather(patches, 1, index), self.proj)

    @property
    def target_dim(self) -> int:
        pz, py, px = self.patch_size
        return pz * py * px * self.in_chans

    def target_patches(self, images: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return patches_3d(images, self.patch_size)

    def unpatchify(self, patches: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return unpatches_3d(patches, self.patch_size, layout.shape, self.in_chans)  # type: ignore[arg-type]
