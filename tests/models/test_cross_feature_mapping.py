"""CrossMAE's feature mapping against TonyLianLong/CrossMAE ``models_cross.py`` (``--weight_fm --use_input``):
parameter shapes, the reference's effective initialisation, and the decoder output recomputed by hand
(feature maps, mixing, per-block LayerNorm, cross-attention written out with softmax)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mae_domains.config import ConfigError, load_config
from mae_domains.grid import gather_tokens
from mae_domains.grid.batch import as_grid_batch
from mae_domains.masking.indices import masking_from_noise, num_kept_tokens
from mae_domains.models.decoding import CrossAttentionDecoder, SelfAttentionDecoder
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import GridEncoder, build_grid_mae

SIZES = dict(preset="micro", depth=3, decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4)


def cross_model(features: str = "mixed"):
    torch.manual_seed(0)
    return build_grid_mae(PatchEmbed2D(3, 64, 8), decoder="cross", cross_features=features, query=0.5, **SIZES)


def test_feature_mapping_parameters_have_the_reference_shapes():
    decoder = cross_model().decoder
    params = dict(decoder.named_parameters())
    assert params["feature_mix.weight"].shape == (2, 3 + 1)  # decoder_depth x (encoder_depth + 1), no bias
    assert "feature_mix.bias" not in params
    for i in range(2):
        assert params[f"context_norms.{i}.weight"].shape == (64,)  # LayerNorm at the encoder width
        assert params[f"blocks.{i}.attn.q.weight"].shape == (32, 32)
        assert params[f"blocks.{i}.attn.kv.weight"].shape == (64, 64)  # encoder width 64 -> 2 x decoder width 32
        assert params[f"blocks.{i}.attn.proj.weight"].shape == (32, 32)
    assert not any(name.startswith("embed.") for name in params)  # no separate encoder -> decoder projection
    last = cross_model("last").decoder
    assert not hasattr(last, "feature_mix") and not hasattr(last, "context_norms")
    assert dict(last.named_parameters())["blocks.0.attn.kv.weight"].shape == (64, 64)


def test_mixing_weights_start_as_the_reference_leaves_them():
    """The reference draws ``normal(0, 1/sqrt(k))`` and then its ``_init_weights`` pass re-draws every
    ``nn.Linear``, this one included, xavier-uniform: bound ``sqrt(6 / (k + decoder_depth))``."""
    torch.manual_seed(0)
    decoder = CrossAttentionDecoder(64, 32, depth=8, num_heads=4, features="mixed", encoder_depth=12)
    weight = decoder.feature_mix.weight
    bound = math.sqrt(6.0 / (13 + 8))
    assert weight.shape == (8, 13) and weight.abs().max() <= bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.25)  # uniform(-b, b) has std b/sqrt(3)


def attention(q, k, v, heads):
    """Multi-head softmax attention written out: ``(B, Q, D)``, ``(B, K, D)`` -> ``(B, Q, D)``."""
    b, nq, d = q.shape
    split = lambda x: x.reshape(b, x.shape[1], heads, d // heads).transpose(1, 2)
    q, k, v = split(q), split(k), split(v)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, nq, d)


def crossmae_masking(noise, mask_ratio, kept_mask_ratio):
    """``models_cross.py`` ``random_masking``: the kept ids, and the decoded ids as ``mask_tokens_grid`` takes
    them (``masked_select`` of the last ``L - len_keep - len_masked`` shuffled tokens, in grid order)."""
    n, length = noise.shape
    len_keep = int(length * (1 - mask_ratio))
    len_masked = int(length * (mask_ratio - kept_mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, length)
    mask[:, :(len_keep + len_masked)] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    positions = torch.arange(length).expand(n, -1)
    decoded = positions.masked_select(mask.bool()).reshape(n, -1)
    return ids_shuffle[:, :len_keep], decoded, mask


def seeded_noise(seeds, length):
    """The per-sample noise rows our seeded masker draws (one generator per seed)."""
    return torch.stack([torch.rand(length, generator=torch.Generator().manual_seed(s)) for s in seeds])


def reference_predictions(model, images, seeds, features):
    """CrossMAE's forward_encoder / forward_decoder, step by step, on this model's weights and noise."""
    enc, dec = model.encoder, model.decoder
    batch = as_grid_batch(images)
    batch_layout = enc.embedding.layout(batch)
    ids_keep, query_ids, _ = crossmae_masking(seeded_noise(seeds, batch_layout.num_tokens), model.mask_ratio,
                                             float(model.query))
    grid = enc.embedding(batch, ids_keep)
    x = torch.cat([enc.cls_token.expand(images.shape[0], -1, -1), grid.tokens], dim=1)
    maps = [x]  # use_input: the tokens entering the first block
    for block in enc.blocks:
        x = block(x)
        maps.append(x)  # every block's output, before the final norm
    if features == "mixed":
        w = dec.feature_mix.weight
        mixes = [sum(w[j, k] * maps[k] for k in range(len(maps))) for j in range(w.shape[0])]
        contexts = [F.layer_norm(m, (m.shape[-1],), n.weight, n.bias, 1e-6) for m, n in zip(mixes, dec.context_norms)]
    else:
        contexts = [F.layer_norm(x, (x.shape[-1],), enc.norm.weight, enc.norm.bias, 1e-6)] * len(dec.blocks)
    codes = grid.codes_at(dec.decoder_embed_dim)
    queries = dec.mask_token + gather_tokens(codes, query_ids)  # mask token + decoder position code
    for block, context in zip(dec.blocks, contexts):
        a = block.attn
        h = block.norm1(queries)
        kv = context @ a.kv.weight.T + a.kv.bias  # keys/values from the encoder width, no code re-added
        k, v = kv[..., : h.shape[-1]], kv[..., h.shape[-1]:]
        queries = queries + (attention(h @ a.q.weight.T + a.q.bias, k, v, a.num_heads) @ a.proj.weight.T + a.proj.bias)
        queries = queries + block.mlp(block.norm2(queries))
    return model.head(dec.norm(queries), query_ids, batch_layout), query_ids


@pytest.mark.parametrize("features", ["mixed", "last"])
def test_decoder_output_equals_the_reference_computation(features):
    model = cross_model(features).eval()
    with torch.no_grad():  # non-trivial norms and mixing so that every term shows
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
    images, seeds = torch.randn(2, 3, 32, 32), [5, 6]
    with torch.no_grad():
        out = model(images, mask_seeds=seeds)
        expected, query_ids = reference_predictions(model, images, seeds, features)
    assert torch.equal(out.query_ids, query_ids)
    torch.testing.assert_close(out.pred, expected, atol=2e-5, rtol=1e-4)


def test_loss_equals_crossmae_on_the_same_noise():
    """``forward_loss`` (norm_pix off): the mean squared error over the decoded tokens' pixels; with the same
    noise, ours decodes the same tokens, so the loss is CrossMAE's and not that of another uniform subset."""
    model = cross_model("mixed").eval()
    images, seeds = torch.randn(2, 3, 32, 32), [5, 6]
    with torch.no_grad():
        out = model(images, mask_seeds=seeds)
        expected, query_ids = reference_predictions(model, images, seeds, "mixed")
    patches = images.reshape(2, 3, 4, 8, 4, 8).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, 8 * 8 * 3)  # nchpwq->nhwpqc
    _, _, mask = crossmae_masking(seeded_noise(seeds, 16), 0.75, 0.5)
    target = patches.masked_select(mask.bool().unsqueeze(-1)).reshape(2, -1, patches.shape[-1])
    reference_loss = ((expected - target) ** 2).mean()
    assert torch.equal(out.query_ids, query_ids)
    torch.testing.assert_close(out.loss, reference_loss, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n, ratio, query", [(196, 0.75, 0.25), (196, 0.75, 0.5), (16, 0.9, 0.25), (50, 0.6, 0.6)])
def test_decoded_tokens_are_crossmaes_highest_noise_ones(n, ratio, query):
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), preset="micro", decoder="cross", query=query, mask_ratio=ratio)
    noise = seeded_noise([11, 12, 13], n)
    ours = model.query_ids(masking_from_noise(noise, num_kept_tokens(n, ratio)), n, ratio)
    _, reference, _ = crossmae_masking(noise, ratio, query)
    assert torch.equal(ours, reference)


def test_gradients_equal_the_reference_computation():
    """The mixes are taken apart with ``unbind`` (one stacked gradient in backward, not a zero-filled
    full-size gradient per block): every parameter's gradient equals the reference's."""
    model = cross_model("mixed")
    images, seeds = torch.randn(2, 3, 32, 32), [5, 6]
    model(images, mask_seeds=seeds).pred.square().mean().backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    expected, _ = reference_predictions(model, images, seeds, "mixed")
    expected.square().mean().backward()
    reference = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() == reference.keys() and "decoder.feature_mix.weight" in ours
    for name, grad in ours.items():
        torch.testing.assert_close(grad, reference[name], atol=1e-6, rtol=1e-4, msg=name)


def test_feature_maps_are_kept_only_for_the_mixing_decoder(monkeypatch):
    seen = []
    original = GridEncoder.encode

    def spy(self, grid, feature_maps=None):
        result = original(self, grid, feature_maps)
        seen.append(None if feature_maps is None else len(feature_maps))
        return result

    monkeypatch.setattr(GridEncoder, "encode", spy)
    images = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    plain = build_grid_mae(PatchEmbed2D(3, 64, 8), decoder="self", **SIZES)
    assert isinstance(plain.decoder, SelfAttentionDecoder) and not plain.uses_feature_maps
    plain(images, mask_seeds=[1, 2])
    cross_model("last")(images, mask_seeds=[1, 2])
    cross_model("mixed")(images, mask_seeds=[1, 2])
    assert seen == [None, None, 3 + 1]


def test_mixing_trains_and_the_unused_final_norm_is_declared():
    model = cross_model()
    model(torch.randn(2, 3, 32, 32), mask_seeds=[1, 2]).loss.backward()
    assert model.decoder.feature_mix.weight.grad.abs().sum() > 0
    assert model.decoder.context_norms[1].weight.grad.abs().sum() > 0
    assert model.encoder.norm.weight.grad is None and model.has_unused_parameters
    assert not cross_model("last").has_unused_parameters


def test_cross_features_is_a_validated_setting():
    config = load_config(None, ["model.decoder=cross"])
    assert config.model.cross_features == "mixed"  # the default of decoder: cross is CrossMAE's feature mapping
    assert load_config(None, ["model.cross_features=last"]).model.cross_features == "last"
    with pytest.raises(ConfigError, match=r"model.cross_features must be 'mixed'.*got 'mixd'.*did you mean 'mixed'"):
        load_config(None, ["model.cross_features=mixd"])
