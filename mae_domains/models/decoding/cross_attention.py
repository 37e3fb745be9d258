"""CrossMAE decoder (Fu et al. 2024; TonyLianLong/CrossMAE ``models_cross.py``): queries (mask token + the
decoder-width code of the position to predict) attend only to the encoder's visible tokens, never to each
other, so any subset of positions is decoded independently and the cost grows with the number of queries.

Context (``features``):

- ``"mixed"`` (CrossMAE's feature mapping, ``--weight_fm --use_input``): the encoder's feature maps, i.e. the
  tokens entering the first block (patch embedding + codes, CLS included) and every block's output, all
  before the final norm, are mixed by a learned ``decoder_depth x (encoder_depth + 1)`` matrix; decoder
  block ``i`` attends to its own LayerNorm of mix ``i``.
- ``"last"``: every block attends to the encoder's final (normed) output (CrossMAE without feature mapping).

Keys and values are projected straight from the encoder width to the decoder width; no position code is
re-added to them (the encoder tokens carry theirs).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from mae_domains.grid import TokenGrid, gather_tokens
from mae_domains.models.attention import attention
from mae_domains.models.blocks import init_mae_weights

CROSS_FEATURES = ("mixed", "last")


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``(B, Q, Dd)`` over context ``(B, K, De)`` with fused SDPA; keys and
    values are projected from the context width ``De`` to ``Dd``."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim or dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, nq, d = queries.shape
        h = self.num_heads
        q = self.q(queries).reshape(b, nq, h, d // h).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, nq, d))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block: ``q + attn(norm1(q), context)``, then ``q + mlp(norm2(q))``; the context comes in
    already normalized (CrossMAE's ``CrossAttentionBlock``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 context_dim: int | None = None) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm(dim)
        self.attn = CrossAttention(dim, num_heads, context_dim)
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        queries = queries + self.drop_path(self.attn(self.norm1(queries), context))
        return queries + self.drop_path(self.mlp(self.norm2(queries)))


def mix_feature_maps(weight: torch.Tensor, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """``weight`` ``(J, K)`` times K maps ``(B, L, D)`` -> ``(J, B, L, D)``: ``out[j] = sum_k w[j, k] map[k]``
    (one matmul, each mix contiguous)."""
    stacked = torch.stack(list(feature_maps), dim=0)
    k = stacked.shape[0]
    if weight.shape[1] != k:
        raise ValueError(f"the feature mix expects {weight.shape[1]} encoder feature maps, got {k}")
    mixed = torch.matmul(weight.to(stacked.dtype), stacked.reshape(k, -1))
    return mixed.reshape(weight.shape[0], *stacked.shape[1:])


class CrossAttentionDecoder(nn.Module):
    """Decodes the positions ``query_ids`` from the encoder's visible tokens (CrossMAE).

    ``features="mixed"`` needs ``encoder_depth`` and the encoder's feature maps at call time
    (:attr:`uses_feature_maps`); ``"last"`` attends to the final encoder output. Parameters:
    ``feature_mix.weight`` ``(depth, encoder_depth + 1)`` (xavier-uniform: the reference's normal init
    with std ``1/sqrt(k)`` is overwritten by its ``_init_weights`` pass), ``context_norms.i`` (LayerNorm at
    the encoder width), ``blocks.i`` (``attn.q`` Dd->Dd, ``attn.kv`` De->2Dd), ``norm``, ``mask_token``.
    """

    def __init__(self, embed_dim: int, decoder_embed_dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0, features: str = "mixed", encoder_depth: int | None = None) -> None:
        super().__init__()
        if features not in CROSS_FEATURES:
            raise ValueError(f"cross-attention features must be one of {', '.join(CROSS_FEATURES)}, got {features!r}")
        if features == "mixed" and (encoder_depth is None or encoder_depth < 1):
            raise ValueError("the mixed feature mapping needs the encoder depth (encoder_depth)")
        self.features = features
        self.decoder_embed_dim = decoder_embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.blocks = nn.ModuleList(CrossAttentionBlock(decoder_embed_dim, num_heads, mlp_ratio, context_dim=embed_dim)
                                    for _ in range(depth))
        if features == "mixed":
            self.feature_mix = nn.Linear(encoder_depth + 1, depth, bias=False)
            self.context_norms = nn.ModuleList(nn.LayerNorm(embed_dim, eps=1e-6) for _ in range(depth))
        self.norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def uses_feature_maps(self) -> bool:
        """Whether :meth:`forward` needs the encoder's feature maps (the encoder then keeps them)."""
        return self.features == "mixed"

    def contexts(self, latent: TokenGrid, feature_maps: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
        """The context each block attends to."""
        if self.features == "last":
            return [latent.sequence()] * len(self.blocks)
        if feature_maps is None:
            raise ValueError("the mixed cross-attention decoder needs the encoder's feature maps")
        mixed = mix_feature_maps(self.feature_mix.weight, feature_maps)
        # unbind, not mixed[i]: its backward stacks the slices' gradients once, where indexing builds a
        # zero-filled full-size gradient per slice and sums them
        return [norm(part) for norm, part in zip(self.context_norms, mixed.unbind(0))]

    def forward(self, latent: TokenGrid, query_ids: torch.Tensor,
                feature_maps: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``latent``: encoded visible subset with prefix; ``query_ids`` ``(B, Q)``; ``feature_maps``: the
        encoder's ``depth + 1`` maps ``(B, P + K, De)`` (mixed mode) -> ``(B, Q, Dd)``."""
        if latent.ids is None:
            raise ValueError("the cross-attention decoder needs the visible subset (latent.ids)")
        codes = latent.codes_at(self.decoder_embed_dim)
        contexts = self.contexts(latent, feature_maps)
        queries = self.mask_token.to(contexts[0].dtype) + gather_tokens(codes.to(contexts[0].dtype), query_ids)
        for block, context in zip(self.blocks, contexts):
            queries = block(queries, context)
        return self.norm(queries)
