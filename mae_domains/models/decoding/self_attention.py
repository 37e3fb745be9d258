"""The standard MAE decoder over the whole grid: visible tokens scattered back to their positions,
mask tokens elsewhere, the decoder-width code added, timm ViT blocks over all tokens (+ prefix)."""

from __future__ import annotations

import torch
from torch import nn

from mae_domains.grid import TokenGrid, gather_tokens, scatter_tokens
from mae_domains.models.encoder import build_blocks, init_mae_weights


class SelfAttentionDecoder(nn.Module):
    """MAE decoder on a token grid. ``query_ids`` ``(B, Q)`` selects which positions' features are
    returned (e.g. the masked ones); ``None`` returns the dense grid ``(B, N, Dd)`` (for dense heads)."""

    def __init__(self, embed_dim: int, decoder_embed_dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.decoder_embed_dim = decoder_embed_dim
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.blocks = build_blocks(decoder_embed_dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: TokenGrid, query_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(latent.sequence())
        p = latent.num_prefix_tokens
        n = latent.layout.num_tokens
        grid = x[:, p:]
        if latent.ids is not None:
            base = self.mask_token.to(x.dtype).expand(1, n, -1)
            grid = scatter_tokens(grid, latent.ids, base)
        grid = grid + latent.codes_at(self.decoder_embed_dim).to(x.dtype)
        out = self.blocks(torch.cat([x[:, :p], grid], dim=1))[:, p:]
        if query_ids is not None:
            out = gather_tokens(out, query_ids)
        return self.norm(out)
