"""ViT encoder that runs on visible tokens only; its state-dict keys equal timm's ``VisionTransformer``.

Keys: ``cls_token``, ``pos_embed`` (1, 1 + N, D; CLS row zero), ``patch_embed.proj.*``, ``blocks.N.*``
(timm ``Block``, fused attention), ``norm.*``. So a timm model loads these weights with ``strict=True``
(head aside) and, without masking, :meth:`ViTEncoder.forward_features` equals timm's.
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from torch import nn

from mae_domains.grid.pos_embed import sincos_2d, sincos_2d_with_prefix
from mae_domains.masking.indices import MaskIndices, gather_tokens, random_masking
from mae_domains.models.blocks import build_blocks, init_mae_weights


def to_2tuple(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


class ViTEncoder(nn.Module):
    """ViT encoder over 2D patches with a fixed (or loaded) absolute position table and a CLS token."""

    num_prefix_tokens = 1

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        fixed_pos_embed: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.fixed_pos_embed = fixed_pos_embed
        self.patch_embed = PatchEmbed(self.img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)  # type: ignore[assignment]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            sincos_2d_with_prefix(embed_dim, self.grid_size), requires_grad=not fixed_pos_embed
        )
        self.blocks = build_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        init_mae_weights(self)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)

    def grid_for(self, height: int, width: int) -> tuple[int, int]:
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not divisible by patch size {p}")
        return (height // p, width // p)

    def patch_pos_embed(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Position codes ``(1, gh*gw, D)`` of the patch tokens for a grid of any size.

        At the built grid this is the stored table. Elsewhere a fixed sin-cos table is recomputed at the
        same spacing (larger extent); a learned table (e.g. loaded from timm) is interpolated (same extent).
        """
        if tuple(grid_hw) == self.grid_size:
            return self.pos_embed[:, self.num_prefix_tokens :]
        if self.fixed_pos_embed:
            return sincos_2d(self.embed_dim, grid_hw, device=self.pos_embed.device).unsqueeze(0).to(self.pos_embed.dtype)
        return resample_abs_pos_embed(self.pos_embed, list(grid_hw), list(self.grid_size), num_prefix_tokens=1)[:, 1:]

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with their position codes added, and the token grid size."""
        grid_hw = self.grid_for(images.shape[-2], images.shape[-1])
        x = self.patch_embed(images)
        return x + self.patch_pos_embed(grid_hw), grid_hw

    def cls_tokens(self, batch_size: int) -> torch.Tensor:
        return (self.cls_token + self.pos_embed[:, :1]).expand(batch_size, -1, -1)

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(tokens))

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens, no masking: ``(B, 1 + N, D)``, identical to timm's ``forward_features``."""
        x, _ = self.embed(images)
        return self.run_blocks(torch.cat([self.cls_tokens(x.shape[0]), x], dim=1))

    def forward_masked(
        self, images: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, MaskIndices, tuple[int, int]]:
        """Encode only the visible tokens: returns ``(latent (B, 1 + K, D), mask indices, grid)``."""
        x, grid_hw = self.embed(images)
        masking = random_masking(x.shape[0], x.shape[1], mask_ratio, noise=noise, device=x.device)
        visible = gather_tokens(x, masking.ids_keep)
        latent = self.run_blocks(torch.cat([self.cls_tokens(x.shape[0]), visible], dim=1))
        return latent, masking, grid_hw

    def pool(self, features: torch.Tensor, mode: str = "cls") -> torch.Tensor:
        return pool_tokens(features, mode, self.num_prefix_tokens)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def extra_repr(self) -> str:
        return f"img_size={self.img_size}, patch_size={self.patch_size}, grid={self.grid_size}"
