"""The converter registry and the original MAE family: an MAE checkpoint (flat ``decoder_*`` keys) lands
weight for weight in a grid model whose encoder then equals timm's ViT; family names, channel matching
by name and wavelength, and one-line refusals."""

from __future__ import annotations

import types

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from mae_domains.conversion import ChannelInfo, RGB_CHANNELS, convert_into, known_families, match_channels, split_family
from mae_domains.conversion.report import summarize_keys
from mae_domains.models.embeddings import PatchEmbed2D
from mae_domains.models.grid_mae import build_grid_mae
from mae_domains.weights import CheckpointFormatError
from tests.conversion.reference import mae_2d_table, mae_decoder_state

IMAGE = types.SimpleNamespace(name="image")


def original_mae(seed: int = 0) -> tuple[VisionTransformer, dict]:
    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=32, patch_size=8, in_chans=3, embed_dim=64, depth=2, num_heads=4, num_classes=0)
    with torch.no_grad():
        vit.pos_embed.copy_(mae_2d_table(64, 4))
        for name, p in vit.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    state.update(mae_decoder_state(64, 32, 1, 4, 8 * 8 * 3, seed=seed + 1, side=4))
    return vit.eval(), state


def micro_model(in_chans: int = 3):
    return build_grid_mae(PatchEmbed2D(in_chans, 64, 8), preset="micro", decoder_embed_dim=32, decoder_depth=1,
                          decoder_num_heads=4).eval()


def test_original_mae_weights_land_everywhere_and_the_encoder_equals_timms_vit():
    vit, state = original_mae()
    model = micro_model()
    report = convert_into(model, state, IMAGE, source="mae_pretrain.pth")
    assert report.family == "mae" and not report.initialized
    own = model.state_dict()
    for source_key, target_key in report.mapped:
        assert torch.equal(own[target_key], state[source_key]), (source_key, target_key)
    assert {t for _, t in report.mapped} == set(own)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.forward_features(x), vit.forward_features(x), atol=1e-5, rtol=1e-5)
    text = report.render()
    assert "pos_embed: the fixed 2D sin-cos table (4x4) is recomputed per batch" in text
    assert "left at initialization" not in text


def test_a_learned_position_table_is_named_as_such():
    _, state = original_mae()
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    report = convert_into(micro_model(), state, IMAGE, source="learned.pth")
    assert "a learned/non-standard table (4x4) is replaced" in report.render()


def test_family_prefix_and_plain_paths(tmp_path):
    assert split_family("satmae_group:/ckpt/a.pth") == ("satmae_group", "/ckpt/a.pth")
    assert split_family("/ckpt/a.pth") == (None, "/ckpt/a.pth")
    odd = tmp_path / "ab:cd.pth"
    odd.write_bytes(b"")
    assert split_family(str(odd)) == (None, str(odd))  # an existing file is never split
    assert "mae" in known_families()


def test_unknown_family_and_unknown_keys_fail_in_one_line():
    _, state = original_mae()
    with pytest.raises(CheckpointFormatError, match="unknown checkpoint family 'nope'; known: .*mae"):
        convert_into(micro_model(), state, IMAGE, family="nope", source="x.pth")
    with pytest.raises(CheckpointFormatError, match="no converter recognizes these weights") as err:
        convert_into(micro_model(), {"w": torch.zeros(3)}, IMAGE, source="x.pth")
    assert "\n" not in str(err.value)


def test_weights_of_another_size_and_nan_weights_are_refused():
    _, state = original_mae()
    bigger = build_grid_mae(PatchEmbed2D(3, 192, 8), preset="tiny", depth=2)
    with pytest.raises(CheckpointFormatError, match="2 blocks of width 64; the model has 2 of width 192"):
        convert_into(bigger, state, IMAGE, source="x.pth")
    state["blocks.0.mlp.fc1.weight"][0, 0] = float("nan")
    with pytest.raises(CheckpointFormatError, match="NaN/Inf values in encoder.blocks.0.mlp.fc1.weight"):
        convert_into(micro_model(), state, IMAGE, source="x.pth")


def test_rgb_weights_into_one_channel_are_summed_and_the_head_averaged():
    vit, state = original_mae()
    model = micro_model(in_chans=1)
    report = convert_into(model, state, IMAGE, source="x.pth")
    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.forward_features(gray), vit.forward_features(gray.expand(-1, 3, -1, -1)),
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.head.pred.bias.detach(), state["decoder_pred.bias"].reshape(64, 3).mean(1))
    assert "3 input channels summed into 1" in report.render()


def test_channels_match_by_name_alias_then_wavelength():
    sentinel = [ChannelInfo("B2", 490.0, ("blue",)), ChannelInfo("B3", 560.0, ("green",)),
                ChannelInfo("B4", 665.0, ("red",)), ChannelInfo("B8", 842.0, ("near infrared",))]
    assert match_channels(RGB_CHANNELS, sentinel) == [2, 1, 0, None]
    landsat = [ChannelInfo("L8:B4", 655.0), ChannelInfo("L8:B5", 865.0), ChannelInfo("L8:B2", 482.0)]
    # 655 nm is within 2.5 % of B4's 665 nm; 865 nm is 2.7 % from B8's 842 nm: no match
    assert match_channels(landsat, sentinel) == [2, None, 0, None]


def test_key_summaries_collapse_block_indices():
    keys = [f"encoder.blocks.{i}.attn.qkv.weight" for i in range(12)] + ["encoder.norm.weight", "encoder.norm.bias"]
    assert summarize_keys(keys) == "encoder.blocks.{0-11}.attn.qkv, encoder.norm"
