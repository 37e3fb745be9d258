"""Dense decoders on a grid encoder's intermediate blocks, for segmentation.

- :class:`UNETRDecoder` (3D, Hatamizadeh et al.; MONAI's UNETR blocks): the input volume through a conv
  block, skip features from intermediate blocks upsampled by transposed convolutions
  (``UnetrPrUpBlock``), and a chain of ``UnetrUpBlock`` from the last block's features back to full
  resolution. For 16^3 patches this is UNETR's layout (skips from blocks 3, 6, 9 of 12); other patch
  sizes (a power of two) get log2(patch) - 1 skips.
- :class:`MultiLevelDecoder2D` (a light FPN-style head for 2D encoders): four block outputs projected by
  1x1 convolutions, merged coarse-to-fine at the token resolution, upsampled to the image and classified;
  grid axes before ``(y, x)`` (a channel-agnostic encoder's ``channel``, band groups) are averaged per place.

:class:`GridSegmenter` wires an encoder (a :class:`~mae_domains.models.grid_mae.GridEncoder`) to a decoder.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock
from torch import nn

from mae_domains.grid import GridBatch


def skip_blocks(depth: int, count: int) -> list[int]:
    """Block indices (0-based outputs) of ``count`` skips spread over ``depth`` blocks: UNETR's 3, 6, 9 of
    12 for ``count`` 3; never the last block (its normed output is the deepest feature)."""
    stages = count + 1
    return [min(max(k * depth // stages, 0), depth - 1) for k in range(1, stages)]


def encoder_features(encoder: nn.Module, batch: GridBatch, blocks: Sequence[int]) -> tuple[list[torch.Tensor], list[int]]:
    """``(features, grid shape)``: the grid tokens (CLS dropped) after each of ``blocks`` and, last, the
    normed output of the final block, each ``(B, D, *grid)``."""
    grid = encoder.embedding(batch)
    shape = list(grid.layout.shape)
    grid = grid.with_prefix(encoder.cls_token.to(grid.tokens.dtype).expand(grid.batch_size, -1, -1))
    x = grid.sequence()
    p = grid.num_prefix_tokens
    wanted = set(blocks)
    out = []

    def dense(seq: torch.Tensor) -> torch.Tensor:
        tokens = seq[:, p:]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *shape)

    for i, block in enumerate(encoder.blocks):
        x = block(x)
        if i in wanted:
            out.append(dense(x))
    out.append(dense(encoder.norm(x)))
    return out, shape


class UNETRDecoder(nn.Module):
    """UNETR decoder for ``(B, C, Z, Y, X)`` inputs with cubic patches of side ``patch`` (a power of two)."""

    def __init__(self, in_chans: int, embed_dim: int, num_classes: int, patch: int, feature_size: int = 16,
                 norm_name: str = "instance") -> None:
        super().__init__()
        stages = int(round(math.log2(patch)))
        if 2 ** stages != patch or stages < 1:
            raise ValueError(f"UNETR decoding needs a power-of-two patch size, got {patch}")
        self.stages = stages
        f = feature_size
        self.stem = UnetrBasicBlock(3, in_chans, f, kernel_size=3, stride=1, norm_name=norm_name, res_block=True)
        self.skips = nn.ModuleList(
            UnetrPrUpBlock(3, embed_dim, f * 2 ** k, num_layer=stages - 1 - k, kernel_size=3, stride=1,
                           upsample_kernel_size=2, norm_name=norm_name, conv_block=True, res_block=True)
            for k in range(1, stages))
        self.ups = nn.ModuleList(
            UnetrUpBlock(3, embed_dim if k == stages - 1 else f * 2 ** (k + 1), f * 2 ** k, kernel_size=3,
                         upsample_kernel_size=2, norm_name=norm_name, res_block=True)
            for k in range(stages - 1, -1, -1))
        self.out = UnetOutBlock(3, f, num_classes)

    @property
    def num_skips(self) -> int:
        return self.stages - 1

    def forward(self, image: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: one per skip (shallow to deep) then the deepest; returns logits at input size."""
        skips = [self.stem(image)] + [block(f) for block, f in zip(self.skips, features[:-1])]
        x = features[-1]
        for up, skip in zip(self.ups, reversed(skips)):
            x = up(x, skip)
        return self.out(x)


class MultiLevelDecoder2D(nn.Module):
    """Light multi-level head for 2D encoders: ``levels`` block outputs -> 1x1 conv -> top-down sum ->
    3x3 conv -> bilinear upsampling to the image -> classes."""

    def __init__(self, embed_dim: int, num_classes: int, levels: int = 4, width: int = 64) -> None:
        super().__init__()
        self.levels = levels
        self.lateral = nn.ModuleList(nn.Conv2d(embed_dim, width, 1) for _ in range(levels))
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.GELU())
        self.refine = nn.Sequential(nn.Conv2d(width + 1, width, 3, padding=1), nn.GroupNorm(8, width), nn.GELU(),
                                    nn.Conv2d(width, num_classes, 1))

    @property
    def num_skips(self) -> int:
        return self.levels - 1

    def forward(self, image: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = sum(lateral(f) for lateral, f in zip(self.lateral, features))
        x = F.interpolate(self.fuse(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(torch.cat([x, image[:, :1]], dim=1))


class GridSegmenter(nn.Module):
    """Encoder + dense decoder; ``forward(images, meta)`` returns class logits at the input size."""

    def __init__(self, encoder: nn.Module, num_classes: int, in_chans: int = 1, feature_size: int = 16) -> None:
        super().__init__()
        self.encoder = encoder
        sizes = encoder.embedding.patch_size
        sizes = tuple(sizes) if isinstance(sizes, (tuple, list)) else (int(sizes),)
        if len(set(sizes)) != 1:
            raise ValueError(f"segmentation decoders need square/cubic patches, got {sizes}")
        patch = sizes[0]
        self.spatial_dims = 3 if len(sizes) == 3 else 2  # CubePatchEmbed3D: (z, y, x); 2D: one int
        dim = encoder.embed_dim
        if self.spatial_dims == 3:
            self.decoder: nn.Module = UNETRDecoder(in_chans, dim, num_classes, patch, feature_size)
        else:
            self.decoder = MultiLevelDecoder2D(dim, num_classes)
        self.blocks = skip_blocks(len(encoder.blocks), self.decoder.num_skips)

    def forward(self, images: torch.Tensor, meta: Mapping[str, Any] | None = None) -> torch.Tensor:
        features, _ = encoder_features(self.encoder, GridBatch(images, None, dict(meta or {})), self.blocks)
        lead = self.spatial_dims + 2  # grid axes before the spatial ones (microscopy channels) are averaged per place
        features = [f.mean(dim=tuple(range(2, f.ndim - self.spatial_dims))) if f.ndim > lead else f for f in features]
        return self.decoder(images, features)
