"""The MAE decoder: a light ViT over the encoder's visible tokens re-ordered with mask tokens."""

from __future__ import annotations

import torch
from torch import nn

from mae_domains.models.blocks import build_blocks, init_mae_weights
from mae_domains.grid.pos_embed import sincos_2d, sincos_2d_with_prefix


class MAEDecoder(nn.Module):
    """Embeds the latent to the decoder width, fills masked slots with a shared mask token, adds the
    fixed sin-cos code and predicts ``patch_dim`` values per patch token (CLS dropped)."""

    num_prefix_tokens = 1

    def __init__(
        self,
        embed_dim: int,
        grid_size: tuple[int, int],
        patch_dim: int,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.decoder_embed_dim = decoder_embed_dim
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d_with_prefix(decoder_embed_dim, self.grid_size), requires_grad=False)
        self.blocks = build_blocks(decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.pred = nn.Linear(decoder_embed_dim, patch_dim)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def pos_embed_for(self, grid_hw: tuple[int, int]) -> torch.Tensor:
        if tuple(grid_hw) == self.grid_size:
            return self.pos_embed
        table = sincos_2d(self.decoder_embed_dim, grid_hw, device=self.pos_embed.device)
        return torch.cat([self.pos_embed[:, :1], table.unsqueeze(0).to(self.pos_embed.dtype)], dim=1)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``latent`` (B, 1 + K, D) and ``ids_restore`` (B, N) -> predictions (B, N, patch_dim)."""
        x = self.embed(latent)
        b, n = ids_restore.shape
        mask_tokens = self.mask_token.to(x.dtype).expand(b, n + 1 - x.shape[1], -1)
        shuffled = torch.cat([x[:, 1:], mask_tokens], dim=1)
        unshuffled = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], unshuffled], dim=1) + self.pos_embed_for(grid_hw)
        x = self.norm(self.blocks(x))
        return self.pred(x)[:, 1:]
