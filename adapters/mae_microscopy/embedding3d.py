"""Channel-agnostic embedding of z-stacks (``z_mode=volume``): every channel's volume through one shared
1-channel cube projection, grid ``(channel, z, y, x)``, a 3D sin-cos position code plus the channel code
looked up by name (the 2D twin is :class:`mae_domains.models.embeddings.ChannelSharedPatchEmbed`)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mae_domains.grid import GridBatch, GridLayout, expand_along_axis, nominal_axis
from mae_domains.models.embeddings.channel_shared import ChannelCodes
from mae_domains.grid import spatial_axis, spatial_codes
from mae_domains.models.embeddings.base import GridEmbedding, project_patches
from mae_domains.models.embeddings.channel_shared import batch_channel_names
from mae_domains.models.embeddings.cube3d import patches_3d, to_3tuple, unpatches_3d
from mae_domains.models.embeddings.patch2d import init_patch_proj


class ChannelSharedCubeEmbed(ChannelCodes, GridEmbedding):
    """``(B, C, Z, H, W)`` with any number and order of channels -> ``C * (Z/pz) * (H/p) * (W/p)`` tokens.

    ``channel_names`` are the names with a learned code (others share the fallback row); ``code_widths``
    adds tables at other widths (the decoder's), as the 2D embedding does."""

    def __init__(self, embed_dim: int, patch_size: int | Sequence[int] = (4, 16, 16),
                 channel_names: Sequence[str] = (), channel_code: bool = True, code_widths: Sequence[int] = ()) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = to_3tuple(patch_size)
        self.in_chans = 1
        self.proj = nn.Conv3d(1, embed_dim, self.patch_size, self.patch_size)
        init_patch_proj(self.proj)
        self.init_channel_codes(channel_names, channel_code, code_widths)

    def layout(self, batch: GridBatch) -> GridLayout:
        images = batch.images
        if images.ndim != 5:
            raise ValueError(f"expected (B, C, Z, H, W) volumes, got shape {tuple(images.shape)}")
        size = images.shape[-3:]
        for s, p in zip(size, self.patch_size):
            if s % p:
                raise ValueError(f"volume size {tuple(size)} is not divisible by patch size {self.patch_size}")
        channel = nominal_axis("channel", batch_channel_names(batch, images.shape[1]))
        spatial = tuple(spatial_axis(n, s // p, spacing=float(p), unit="px")
                        for n, s, p in zip(("z", "y", "x"), size, self.patch_size))
        return GridLayout((channel,) + spatial)

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        position = spatial_codes(layout, width, device=batch.images.device)
        if not self.channel_code:
            return position
        if str(width) not in self.channel_tables:
            raise ValueError(f"no channel-code table of width {width} (has {list(self.channel_tables)})")
        names = layout.axis("channel").labels
        return position + expand_along_axis(self.channel_tables[str(width)](names), layout, "channel")

    def _per_channel(self, images: torch.Tensor, channel_last: bool) -> torch.Tensor:
        b, c = images.shape[:2]
        patches = patches_3d(images.reshape(b * c, 1, *images.shape[2:]), self.patch_size, channel_last)
        return patches.reshape(b, c * patches.shape[1], patches.shape[2])

    def project(self, batch: GridBatch, layout: GridLayout, ids: torch.Tensor | None) -> torch.Tensor:
        images = batch.images
        b, c = images.shape[:2]
        if ids is None:
            tokens = self.proj(images.reshape(b * c, 1, *images.shape[2:]))  # (B*C, D, gz, gy, gx)
            return tokens.flatten(2).transpose(1, 2).reshape(b, -1, self.embed_dim)
        patches = self._per_channel(images, channel_last=False)
        index = ids.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        return project_patches(torch.gather(patches, 1, index), self.proj)

    @property
    def target_dim(self) -> int:
        pz, py, px = self.patch_size
        return pz * py * px

    def target_patches(self, images: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return self._per_channel(images, channel_last=True)

    def unpatchify(self, patches: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        b = patches.shape[0]
        c = layout.axis("channel").size
        grid = tuple(layout.axis(n).size for n in ("z", "y", "x"))
        volumes = unpatches_3d(patches.reshape(b * c, -1, patches.shape[-1]), self.patch_size, grid, 1)
        return volumes.reshape(b, c, *volumes.shape[2:])
