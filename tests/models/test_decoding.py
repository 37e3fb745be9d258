"""Decoders for a query set and heads routed by axis index."""

import pytest
import torch

from mae_domains.grid import GridLayout, TokenGrid, ordinal_axis, spatial_axis, spatial_codes
from mae_domains.models.decoding import CrossAttentionDecoder, DensePixelHead, LinearHead, RoutedHead, SelfAttentionDecoder

LAYOUT = GridLayout((spatial_axis("y", 4), spatial_axis("x", 4)))


def latent(batch=2, keep=5, width=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(16, generator=gen)[:keep] for _ in range(batch)])
    return TokenGrid(tokens=torch.randn(batch, keep, width, generator=gen), layout=LAYOUT, ids=ids,
                     prefix=torch.randn(batch, 1, width, generator=gen),
                     code_fn=lambda w: spatial_codes(LAYOUT, w))


def feature_maps(lat, count=3, seed=1):
    """``count`` encoder feature maps ``(B, 1 + K, D)`` (CLS + visible tokens)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(lat.batch_size, 1 + lat.num_tokens, lat.dim, generator=gen) for _ in range(count)]


def build_cross(features, depth):
    return CrossAttentionDecoder(32, 16, depth=depth, num_heads=2, features=features, encoder_depth=2).eval()


@pytest.mark.parametrize("features", ["mixed", "last"])
def test_cross_decoder_queries_are_independent_of_each_other(features):
    torch.manual_seed(0)
    dec = build_cross(features, 2)
    lat = latent()
    maps = feature_maps(lat)
    all_ids = torch.arange(16).expand(2, -1)
    with torch.no_grad():
        full = dec(lat, all_ids, feature_maps=maps)
        subset = dec(lat, all_ids[:, [3, 9]], feature_maps=maps)
    assert full.shape == (2, 16, 16) and subset.shape == (2, 2, 16)
    assert torch.allclose(subset, full[:, [3, 9]], atol=1e-5)


def test_cross_decoder_ignores_non_visible_positions():
    torch.manual_seed(0)
    dec = build_cross("last", 1)
    lat = latent()
    ids = torch.tensor([[0, 1], [2, 3]])
    with torch.no_grad():
        a = dec(lat, ids)
        lat.tokens[:, 0] += 1.0  # change one visible token: the output must change
        b = dec(lat, ids)
    assert not torch.allclose(a, b)


def test_self_attention_decoder_query_subset_and_dense():
    torch.manual_seed(0)
    dec = SelfAttentionDecoder(32, 16, depth=1, num_heads=2).eval()
    lat = latent()
    with torch.no_grad():
        dense = dec(lat)
        some = dec(lat, torch.tensor([[1, 2], [5, 0]]))
    assert dense.shape == (2, 16, 16)
    assert torch.allclose(some[0], dense[0, [1, 2]], atol=1e-6) and torch.allclose(some[1], dense[1, [5, 0]], atol=1e-6)


def test_routed_head_uses_the_head_of_each_query_index():
    layout = GridLayout((ordinal_axis("group", 3), spatial_axis("y", 2), spatial_axis("x", 2)))
    head = RoutedHead(4, 2, "group", 3)
    with torch.no_grad():
        for g, h in enumerate(head.heads):
            h.weight.zero_()
            h.bias.fill_(float(g))
    ids = torch.tensor([[0, 4, 11, 5]])
    out = head(torch.randn(1, 4, 4), ids, layout)
    assert out[0, :, 0].tolist() == [0.0, 1.0, 2.0, 1.0]


def test_dense_head_returns_an_image():
    from mae_domains.models.embeddings import PatchEmbed2D

    emb = PatchEmbed2D(3, 32, 4)
    head = DensePixelHead(16, emb.target_dim, emb.unpatchify)
    image = head(torch.randn(2, 16, 16), LAYOUT)
    assert image.shape == (2, 3, 16, 16)
    assert LinearHead(16, 5)(torch.randn(1, 2, 16), None, LAYOUT).shape == (1, 2, 5)
