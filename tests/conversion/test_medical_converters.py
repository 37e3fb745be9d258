"""Medical checkpoints into our models: the chest X-ray MAE (timm keys, 3-channel embedding summed into one:
the model on a gray image equals the reference ViT on that image copied to RGB) and MONAI's ViT / UNETR
for CT (every weight placed; a block and the patch projection equal MONAI's on the same input)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import ViT
from timm.models.vision_transformer import VisionTransformer

from mae_domains.conversion import convert_into
from mae_domains.runs import build_model
from mae_domains.weights import CheckpointFormatError
from tests.conversion.reference import mae_2d_table, mae_decoder_state

SMALL_1 = {"preset": "small", "depth": 1, "img_size": 32, "patch_size": 16, "decoder_embed_dim": 512,
           "decoder_depth": 1, "decoder_num_heads": 16}


def xray_reference(seed: int = 0) -> tuple[VisionTransformer, dict]:
    """medical_mae's ViT-S/16 (384 wide, 6 heads; one block here) with its MAE decoder keys."""
    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=32, patch_size=16, in_chans=3, embed_dim=384, depth=1, num_heads=6, num_classes=0)
    with torch.no_grad():
        vit.pos_embed.copy_(mae_2d_table(384, 2))
        for name, p in vit.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    state.update(mae_decoder_state(384, 512, 1, 16, 16 * 16 * 3, seed=seed + 1, side=2))
    return vit.eval(), state


def test_chest_xray_mae_sums_rgb_into_one_channel_and_matches_the_reference_vit():
    adapter, model, _ = build_model({"adapter": "medical.xray", "model": SMALL_1})
    vit, state = xray_reference()
    report = convert_into(model, state, adapter, family="chest_xray_mae", source="vit-s_CXR_0.3M_mae.pth")
    weight = model.encoder.embedding.proj.weight.detach()
    torch.testing.assert_close(weight[:, 0], state["patch_embed.proj.weight"].sum(1))
    gray = torch.rand(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.forward_features(gray), vit.forward_features(gray.expand(-1, 3, -1, -1)),
                                   atol=1e-5, rtol=1e-5)
    head = state["decoder_pred.weight"].reshape(256, 3, -1).mean(1)  # (p, q, c): the three colours averaged
    torch.testing.assert_close(model.head.pred.weight.detach(), head)
    assert torch.equal(model.decoder.blocks[0].mlp.fc1.weight.detach(), state["decoder_blocks.0.mlp.fc1.weight"])
    assert "3 input channels summed into 1" in report.render()
    assert not report.initialized  # encoder and decoder complete


def test_chest_xray_encoder_only_release_leaves_the_decoder_fresh_and_says_so():
    adapter, model, _ = build_model({"adapter": "medical.xray", "model": SMALL_1})
    _, state = xray_reference()
    encoder_only = {k: v for k, v in state.items() if not k.startswith(("decoder_", "mask_token"))}
    encoder_only["head.weight"], encoder_only["head.bias"] = torch.zeros(14, 384), torch.zeros(14)
    report = convert_into(model, encoder_only, adapter, source="finetuned.pth")
    assert report.family == "mae" and report.decoder_initialized
    assert "the decoder starts fresh" in report.render()
    assert ("head.weight", "classifier of a fine-tuned model") in report.dropped


def monai_vit(seed: int = 0, **kwargs) -> ViT:
    torch.manual_seed(seed)
    vit = ViT(in_channels=1, img_size=(32, 32, 32), patch_size=(16, 16, 16), hidden_size=64, mlp_dim=256,
              num_layers=2, num_heads=4, classification=False, **kwargs)
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return vit.eval()


CT_MICRO = {"preset": "micro", "img_size": 32, "patch_size": 16, "decoder_embed_dim": 32, "decoder_depth": 1,
            "decoder_num_heads": 4}


def ct_model():
    adapter, model, _ = build_model({"adapter": "medical.ct", "model": CT_MICRO})
    return adapter, model.eval()


def test_monai_vit_weights_land_on_the_cube_model_and_compute_what_monai_computes():
    adapter, model = ct_model()
    vit = monai_vit()
    state = {f"vit.{k}": v for k, v in vit.state_dict().items()}  # as UNETR holds them
    state["decoder5.transp_conv.conv.weight"] = torch.zeros(2, 2)
    report = convert_into(model, state, adapter, source="unetr_ssl.pt")
    assert report.family == "monai_vit"
    assert {k for k in report.initialized} == {k for k in model.state_dict() if not k.startswith("encoder.")} | {"encoder.cls_token"}
    torch.manual_seed(2)
    volume_xyz = torch.randn(1, 1, 32, 32, 32)  # MONAI's RAS array (x, y, z)
    ours = volume_xyz.permute(0, 1, 4, 3, 2)  # this adapter's (z, y, x)
    with torch.no_grad():
        monai_tokens = vit.patch_embedding.patch_embeddings(volume_xyz)  # (1, D, gx, gy, gz)
        our_tokens = model.encoder.embedding.proj(ours)  # (1, D, gz, gy, gx)
        torch.testing.assert_close(our_tokens, monai_tokens.permute(0, 1, 4, 3, 2), atol=1e-5, rtol=1e-5)
        tokens = torch.randn(1, 9, 64)
        for i in range(2):  # MONAI's LayerNorm eps is 1e-5, ours 1e-6: equal to ~1e-5
            torch.testing.assert_close(model.encoder.blocks[i](tokens), vit.blocks[i](tokens), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model.encoder.norm(tokens), vit.norm(tokens), atol=1e-4, rtol=1e-4)
    assert torch.count_nonzero(model.encoder.blocks[0].attn.qkv.bias) == 0  # MONAI: qkv without bias
    text = report.render()
    assert "learned table is replaced" in text and "(x, y, z) of a RAS array reversed" in text
    assert ("decoder5.transp_conv.conv.weight", "outside the ViT (UNETR/autoencoder decoder)") in report.dropped


def test_monai_perceptron_patch_embedding_is_reshaped_into_the_cube_kernel():
    adapter, model = ct_model()
    vit = monai_vit(proj_type="perceptron")
    convert_into(model, vit.state_dict(), adapter, source="vit_perceptron.pt")
    torch.manual_seed(3)
    volume_xyz = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        monai_tokens = vit.patch_embedding.patch_embeddings(volume_xyz)  # (1, N, D), tokens x-major
        ours = model.encoder.embedding.proj(volume_xyz.permute(0, 1, 4, 3, 2))  # (1, D, gz, gy, gx)
        ours_xyz = ours.permute(0, 4, 3, 2, 1).reshape(1, -1, 64)
    torch.testing.assert_close(ours_xyz, monai_tokens, atol=1e-5, rtol=1e-5)


def test_monai_weights_of_another_width_fail_in_one_line():
    adapter, model = ct_model()
    vit = ViT(in_channels=1, img_size=(32, 32, 32), patch_size=(16, 16, 16), hidden_size=48, mlp_dim=96,
              num_layers=1, num_heads=4, classification=False)
    with pytest.raises(CheckpointFormatError, match="1 blocks of width 48; the model has 2 of width 64") as err:
        convert_into(model, vit.state_dict(), adapter, source="other.pt")
    assert "\n" not in str(err.value)
