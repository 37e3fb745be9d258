"""The standard MAE decoder over the whole grid: visible tokens scattered back to their positions,
mask tokens elsewhere, the decoder-width code added, timm ViT blocks over all tokens (+ prefix).

Only the queried positions' outputs are used, so the last block is evaluated at those rows only (keys
and values still come from every token): the same result as the full block, without the query, output
projection and MLP work for rows nobody reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from mae_domains.grid import TokenGrid, gather_tokens, scatter_tokens
from mae_domains.models.attention import attention
from mae_domains.models.blocks import build_blocks, init_mae_weights


def block_at_rows(block: Block, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A timm ``Block`` over ``x`` ``(B, N, D)`` evaluated only at ``rows`` ``(B, Q)`` -> ``(B, Q, D)``."""
    attn = block.attn
    b, n, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    h = block.norm1(x)
    weight, bias = attn.qkv.weight, attn.qkv.bias
    kv = F.linear(h, weight[width:], None if bias is None else bias[width:])
    k, v = kv.reshape(b, n, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    h_rows = gather_tokens(h, rows)
    q = F.linear(h_rows, weight[:width], None if bias is None else bias[:width])
    q = q.reshape(b, rows.shape[1], heads, head_dim).transpose(1, 2)
    q, k = attn.q_norm(q), attn.k_norm(k)
    out = attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    out = attn.norm(out.transpose(1, 2).reshape(b, rows.shape[1], width))
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(h_rows).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    x_rows = gather_tokens(x, rows) + block.drop_path1(block.ls1(out))
    return x_rows + block.drop_path2(block.ls2(block.mlp(block.norm2(x_rows))))


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

    def forward(self, latent: TokenGrid, query_ids: torch.Tensor | None = None,
                prefix_codes: torch.Tensor | None = None) -> torch.Tensor:
        """``prefix_codes`` ``(1, P, Dd)``: codes added to the prefix tokens (SatMAE gives the decoder's CLS
        token the group code G); None leaves them without code, as MAE."""
        x = self.embed(latent.sequence())
        p = latent.num_prefix_tokens
        n = latent.layout.num_tokens
        grid = x[:, p:]
        if latent.ids is not None:
            base = self.mask_token.to(x.dtype).expand(1, n, -1)
            grid = scatter_tokens(grid, latent.ids, base)
        grid = grid + latent.codes_at(self.decoder_embed_dim).to(x.dtype)
        prefix = x[:, :p] if prefix_codes is None else x[:, :p] + prefix_codes.to(x.dtype)
        x = torch.cat([prefix, grid], dim=1)
        if query_ids is None:
            return self.norm(self.blocks(x)[:, p:])
        x = self.blocks[:-1](x)
        return self.norm(block_at_rows(self.blocks[-1], x, query_ids + p))
