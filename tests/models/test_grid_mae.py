"""GridMAE end to end: equals the plain MAE on 2D, per-group alignment, validity, seeds, every adapter shape."""

import math

import pytest
import torch

from mae_domains.masking import build_masker
from mae_domains.testing.reference_mae import MAEConfig, MaskedAutoencoder
from mae_domains.models.embeddings import (
    BandGroupPatchEmbed, ChannelSharedPatchEmbed, CubePatchEmbed3D, GridBatch, PatchEmbed2D, TemporalPatchEmbed,
)
from mae_domains.models.grid_mae import build_grid_mae
from mae_domains.models.targets import PixelTarget, normalize_valid_patches
from mae_domains.models.losses import normalize_patches

MICRO = dict(preset="micro", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)


def copy_mae_weights(ref: MaskedAutoencoder, model) -> None:
    e, d = ref.encoder, ref.decoder
    model.encoder.embedding.proj.load_state_dict(e.patch_embed.proj.state_dict())
    model.encoder.cls_token.data.copy_(e.cls_token.data)
    model.encoder.blocks.load_state_dict(e.blocks.state_dict())
    model.encoder.norm.load_state_dict(e.norm.state_dict())
    model.decoder.embed.load_state_dict(d.embed.state_dict())
    model.decoder.mask_token.data.copy_(d.mask_token.data)
    model.decoder.blocks.load_state_dict(d.blocks.state_dict())
    model.decoder.norm.load_state_dict(d.norm.state_dict())
    model.head.pred.load_state_dict(d.pred.state_dict())


@pytest.mark.parametrize("norm_pix", [False, True])
def test_2d_grid_mae_equals_plain_mae(norm_pix):
    torch.manual_seed(0)
    ref = MaskedAutoencoder(MAEConfig(img_size=(32, 48), patch_size=8, norm_pix_loss=norm_pix, **MICRO)).eval()
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), norm_pix_loss=norm_pix, **MICRO).eval()
    copy_mae_weights(ref, model)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        a = ref(x, mask_seeds=[3, 4])
        b = model(x, mask_seeds=[3, 4])
    assert torch.equal(a.mask, b.mask)
    assert torch.allclose(a.loss, b.loss, rtol=1e-5)
    assert torch.allclose(b.full_pred() * b.mask[..., None], a.pred * a.mask[..., None], atol=1e-5)
    # the encoder alone (no masking) matches too
    assert torch.allclose(model.encoder.forward_features(x), ref.encoder.forward_features(x), atol=1e-5)


def test_encoder_state_dict_keys_follow_timm():
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO)
    keys = set(model.encoder.state_dict())
    assert {"cls_token", "blocks.0.attn.qkv.weight", "norm.weight", "embedding.proj.weight"} <= keys


def test_timm_export_of_a_2d_grid_encoder():
    import timm

    model = build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO).eval()
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=(16, 24), patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=0).eval()
    vit.load_state_dict(model.encoder.timm_state_dict((2, 3)), strict=True)
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        assert torch.allclose(vit.forward_features(x), model.encoder.forward_features(x), atol=1e-5)


def test_band_groups_prediction_and_target_never_mix_band_order():
    """Every band holds a distinct constant; heads that output each group's bands in group order give a
    zero loss, and swapping two groups' heads does not."""
    groups = [[4, 1, 7], [0, 5], [2, 3, 6]]
    emb = BandGroupPatchEmbed(groups, 64, 8)
    model = build_grid_mae(emb, **MICRO)
    images = (torch.arange(8, dtype=torch.float32) * 10 + 10).reshape(1, 8, 1, 1).expand(2, 8, 16, 16).contiguous()
    p2 = 64

    def set_heads(order):
        with torch.no_grad():
            for head, g in zip(model.head.heads, order):
                head.weight.zero_()
                slots = torch.zeros(emb.max_group)
                slots[: len(g)] = images[0, g, 0, 0]
                head.bias.copy_(slots.repeat(p2))  # (p, q, slot) order

    set_heads(groups)
    out = model(images, mask_seeds=[1, 2])
    assert out.loss.item() == 0.0
    assert torch.equal(model.reconstruct(images, out), images)
    set_heads([groups[1], groups[0], groups[2]])
    assert model(images, mask_seeds=[1, 2]).loss.item() > 1.0


def test_invalid_tokens_masked_and_zero_weighted():
    model = build_grid_mae(PatchEmbed2D(1, 64, 8), query="all", **MICRO)
    images = torch.randn(3, 1, 32, 32)
    valid = torch.ones(3, 32, 32, dtype=torch.bool)
    valid[0, :16] = False  # top half of sample 0 is nodata: 8 of 16 tokens
    valid[1, :8, :8] = False
    images[~valid.unsqueeze(1)] = 0.0
    out = model(images, mask_seeds=[1, 2, 3], valid=valid)
    garbage = images.clone()
    garbage[~valid.unsqueeze(1)] = 1e6  # values under nodata (whole tokens here) must not matter
    assert torch.equal(model(garbage, mask_seeds=[1, 2, 3], valid=valid).loss, out.loss)
    token_valid = model.embedding.token_validity(GridBatch(images, valid=valid), out.layout)
    assert (out.mask[~token_valid] == 1).all()
    assert out.masking.num_keep == 4
    tw = torch.zeros_like(out.mask).scatter(1, out.query_ids, out.token_weight)
    assert (tw[~token_valid] == 0).all()
    assert torch.isfinite(out.loss)
    # the engine all-reduces this denominator: masked tokens that hold valid pixels, nothing else
    expected = ((out.mask == 1) & token_valid).sum()
    assert out.loss_denominator.item() == expected.item() == 3 * 12 - 8 - 1
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_norm_pix_valid_only_statistics():
    x = torch.randn(2, 5, 12)
    ones = torch.ones_like(x)
    assert torch.allclose(normalize_valid_patches(x, ones), normalize_patches(x), atol=1e-5)
    w = ones.clone()
    w[0, 0, 6:] = 0  # half the values invalid: stats over the first half only
    got = normalize_valid_patches(x, w)[0, 0, :6]
    ref = normalize_patches(x[0, 0, :6].unsqueeze(0))[0]
    assert torch.allclose(got, ref, atol=1e-5)
    w[1, 1] = 0  # all invalid
    x[1, 2] = 3.0  # zero variance
    out = normalize_valid_patches(x, w)
    assert torch.isfinite(out).all() and (out[1, 2] == 0).all()


def test_pixel_target_uses_full_resolution_target_image():
    emb = PatchEmbed2D(1, 64, 8)
    sharp, blurred = torch.randn(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    batch = GridBatch(blurred, target_images=sharp)
    target, weight = PixelTarget()(batch, emb, emb.layout(batch))
    assert torch.equal(emb.unpatchify(target, emb.layout(batch)), sharp) and (weight == 1).all()


ADAPTER_CASES = {
    # CT: 3D cubes, voxel spacing scales the 3D code
    "ct_3d": lambda w: (CubePatchEmbed3D(1, w, 8, reference_spacing=(2.0, 1.5, 1.5)),
                        GridBatch(torch.randn(2, 1, 16, 16, 16), meta={"spacing": torch.tensor([[2.0, 1.5, 1.5]] * 2)}),
                        dict()),
    # Sentinel-2 band groups, independent masking across groups
    "s2_groups": lambda w: (BandGroupPatchEmbed([[0, 1, 2, 6], [3, 4, 5, 7], [8, 9]], w, 8),
                            GridBatch(torch.randn(2, 10, 16, 16)),
                            dict(masker=build_masker("independent", "group"))),
    # time series: shared projection, date code, consistent (tube) masking, cross decoder on 25%
    "temporal": lambda w: (TemporalPatchEmbed(3, w, 8),
                           GridBatch(torch.randn(2, 3, 3, 16, 16), meta={"dates": torch.rand(2, 3, 3) * 12}),
                           dict(masker=build_masker("consistent", "time"), decoder="cross", query=0.25)),
    # channel-agnostic microscopy: any channels by name, decoder shared by all channels
    "microscopy": lambda w: (ChannelSharedPatchEmbed(w, 8, ["DNA", "RNA", "ER"], code_widths=[32]),
                             GridBatch(torch.randn(2, 4, 16, 16), meta={"channel_names": ["ER", "DNA", "AGP", "RNA"]}),
                             dict(decoder="cross")),
}


@pytest.mark.parametrize("case", sorted(ADAPTER_CASES))
def test_adapter_shaped_models_train_a_step(case):
    torch.manual_seed(0)
    emb, batch, extra = ADAPTER_CASES[case](64)
    model = build_grid_mae(emb, **MICRO, **extra)
    out = model(batch, mask_seeds=[1, 2])
    n = out.layout.num_tokens
    assert out.mask.shape == (2, n) and math.isfinite(out.loss.item())
    assert out.pred.shape == (2, out.query_ids.shape[1], emb.target_dim)
    if extra.get("query") == 0.25:
        assert out.query_ids.shape[1] == n - out.masking.num_keep - int(n * (0.75 - 0.25))  # CrossMAE's count
    out.loss.backward()
    assert model.encoder.cls_token.grad is not None
    again = model(batch, mask_seeds=[1, 2])
    assert torch.equal(again.mask, out.mask)
    assert model.reconstruct(batch, out).shape == batch.images.shape
    assert model.encoder.forward_features(batch).shape == (2, 1 + n, 64)


def test_masks_through_the_model_are_independent_of_batch_composition():
    model = build_grid_mae(PatchEmbed2D(3, 64, 8), **MICRO)
    x = torch.randn(3, 3, 16, 16)
    a = model(x, mask_seeds=[5, 6, 7])
    b = model(x[[2, 0]], mask_seeds=[7, 5])
    assert torch.equal(a.mask[2], b.mask[0]) and torch.equal(a.mask[0], b.mask[1])


def test_dict_batch_input():
    model = build_grid_mae(ChannelSharedPatchEmbed(64, 8, ["a", "b"]), **MICRO)  # adds the decoder-width table
    out = model({"image": torch.randn(2, 2, 16, 16), "channel_names": ["b", "a"]}, mask_seeds=[0, 1])
    assert out.layout.axis("channel").labels == ("b", "a")


def test_preset_width_mismatch_is_an_error():
    with pytest.raises(ValueError, match="width"):
        build_grid_mae(PatchEmbed2D(3, 32, 8), preset="micro")
