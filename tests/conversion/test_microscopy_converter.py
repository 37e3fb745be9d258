"""The channel-agnostic microscopy MAE (maes_microscopy: ``encoder.vit_backbone.*`` timm keys, one shared
1-channel patch conv, its own [sin h, cos h, sin w, cos w] position code, no channel code) into
``microscopy.channel_agnostic``: features equal the reference's up to a fixed permutation of dimensions."""

from __future__ import annotations

import pytest
import torch

from mae_domains.conversion import convert_into
from mae_domains.runs import build_model
from mae_domains.weights import CheckpointFormatError
from tests.conversion.reference import prefixed, random_blocks, random_norm, run_blocks

MICRO = {"preset": "micro", "img_size": 32, "patch_size": 8, "decoder_embed_dim": 32, "decoder_depth": 1,
         "decoder_num_heads": 4}
CHANNELS = ["DNA", "ER", "RNA", "AGP", "Mito"]


def recursion_pos_embed(width: int, side: int, channels: int) -> torch.Tensor:
    """maes_microscopy's ``generate_2d_sincos_pos_embeddings`` (formula written out): [sin h, cos h,
    sin w, cos w] with width/4 frequencies, repeated for each channel, a zero CLS row first."""
    positions = torch.arange(side, dtype=torch.float32)
    h, w = torch.meshgrid(positions, positions, indexing="ij")
    dim = width // 4
    omega = 1.0 / 10000.0 ** (torch.arange(dim, dtype=torch.float32) / dim)
    hw, ww = torch.outer(h.flatten(), omega), torch.outer(w.flatten(), omega)
    table = torch.cat([torch.sin(hw), torch.cos(hw), torch.sin(ww), torch.cos(ww)], dim=1)[None].repeat(1, channels, 1)
    return torch.cat([torch.zeros(1, 1, width), table], dim=1)


def ca_mae_state(width: int = 64, depth: int = 2, seed: int = 0, **block_kwargs) -> tuple[dict, torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    blocks = random_blocks(width, depth, 4, seed + 1, **block_kwargs)
    norm = random_norm(width, seed + 2)
    state = {"encoder.vit_backbone.patch_embed.proj.weight": torch.randn(width, 1, 8, 8) * 0.1,
             "encoder.vit_backbone.patch_embed.proj.bias": torch.randn(width) * 0.1,
             "encoder.vit_backbone.cls_token": torch.randn(1, 1, width),
             "encoder.vit_backbone.pos_embed": recursion_pos_embed(width, 4, 6)}
    state.update(prefixed(blocks, "encoder.vit_backbone.blocks."))
    state.update(prefixed(norm, "encoder.vit_backbone.norm."))
    state["decoder.mask_token"] = torch.zeros(1, 1, 32)
    state["decoder.decoders.0.0.weight"] = torch.zeros(32, 32)
    return state, blocks, norm


def reference_features(state: dict, blocks, norm, images: torch.Tensor) -> torch.Tensor:
    """``ChannelAgnosticPatchEmbed`` + ``ChannelAgnosticViT._pos_embed`` + blocks + norm."""
    p = "encoder.vit_backbone."
    per_channel = [torch.nn.functional.conv2d(images[:, i:i + 1], state[p + "patch_embed.proj.weight"],
                                              state[p + "patch_embed.proj.bias"], stride=8) for i in range(images.shape[1])]
    x = torch.stack(per_channel, dim=2).flatten(2).transpose(1, 2)  # channel-major tokens
    x = torch.cat([state[p + "cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
    x = x + state[p + "pos_embed"][:, : x.shape[1]]
    return run_blocks(blocks, norm, x)


def test_channel_agnostic_mae_features_equal_the_reference_up_to_a_fixed_permutation():
    adapter, model, _ = build_model({"adapter": "microscopy.channel_agnostic", "model": MICRO,
                                     "data": {"options": {"channel_vocabulary": CHANNELS}}})
    state, blocks, norm = ca_mae_state(init_values=1e-1, qkv_bias=False)  # LayerScale folded, qkv bias zero
    report = convert_into(model, state, adapter, source="camae.ckpt")
    assert report.family == "ca_mae"
    torch.manual_seed(4)
    images = torch.randn(2, 5, 32, 32)
    model.eval()
    with torch.no_grad():
        ours = model.encoder.forward_features({"image": images, "meta": {"channel_names": CHANNELS}})
        reference = reference_features(state, blocks.eval(), norm, images)
    half = 32
    permutation = torch.cat([torch.arange(half, 64), torch.arange(half)])
    torch.testing.assert_close(ours, reference[..., permutation], atol=1e-5, rtol=1e-5)
    text = report.render()
    assert "LayerScale gammas folded" in text and "qkv without bias" in text and "halves swapped" in text
    assert "channel-name codes at the encoder width zeroed" in text
    assert report.decoder_initialized


def test_parallel_blocks_of_the_released_phenom_models_are_refused_in_one_line():
    adapter, model, _ = build_model({"adapter": "microscopy.channel_agnostic", "model": MICRO})
    state, _, _ = ca_mae_state()
    state = {k.replace("attn.qkv", "in_proj"): v for k, v in state.items()}
    with pytest.raises(CheckpointFormatError, match="parallel .ParallelScalingBlock. block") as err:
        convert_into(model, state, adapter, source="phenom_beta.ckpt")
    assert "\n" not in str(err.value)
