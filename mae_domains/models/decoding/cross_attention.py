"""CrossMAE decoder: queries (mask token + code of the position to predict) attend only to the visible
tokens; no self-attention among queries, so any subset of positions can be decoded independently and
decoding cost grows with the number of queries, not with the grid."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from mae_domains.grid import TokenGrid, gather_tokens
from mae_domains.models.encoder import init_mae_weights


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``(B, Q, D)`` over context ``(B, K, D)`` with fused SDPA."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, nq, d = queries.shape
        h = self.num_heads
        q = self.q(queries).reshape(b, nq, h, d // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, nq, d))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block: ``q + attn(norm(q), norm(context))``, then ``q + mlp(norm(q))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm(dim)
        self.norm_context = norm(dim)
        self.attn = CrossAttention(dim, num_heads)
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        queries = queries + self.drop_path(self.attn(self.norm1(queries), self.norm_context(context)))
        return queries + self.drop_path(self.mlp(self.norm2(queries)))


class CrossAttentionDecoder(nn.Module):
    """Decodes the positions ``query_ids`` from the encoder's visible tokens (CrossMAE).

    Visible tokens (and prefix tokens) are embedded to the decoder width and get the decoder-width
    code of their position; each query is the shared mask token plus its position's code.
    """

    def __init__(self, embed_dim: int, decoder_embed_dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.decoder_embed_dim = decoder_embed_dim
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.blocks = nn.ModuleList(CrossAttentionBlock(decoder_embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: TokenGrid, query_ids: torch.Tensor) -> torch.Tensor:
        """``latent``: encoded visible subset with prefix; ``query_ids`` ``(B, Q)`` -> ``(B, Q, Dd)``."""
        if latent.ids is None:
            raise ValueError("the cross-attention decoder needs the visible subset (latent.ids)")
        codes = latent.codes_at(self.decoder_embed_dim).to(latent.tokens.dtype)
        context = self.embed(latent.sequence())
        p = latent.num_prefix_tokens
        visible_codes = gather_tokens(codes, latent.ids)
        context = torch.cat([context[:, :p], context[:, p:] + visible_codes], dim=1)
        queries = self.mask_token.to(context.dtype) + gather_tokens(codes, query_ids)
        for block in self.blocks:
            queries = block(queries, context)
        return self.norm(queries)
