"""Weight compatibility: timm loading, original MAE checkpoints, safe unpickling, safetensors."""

import argparse
import os

import pytest
import timm
import torch

from mae_domains.testing.reference_mae import MAEConfig, MaskedAutoencoder
from mae_domains.weights import (
    UnsafeCheckpointError,
    encoder_state_dict_for_timm,
    load_mae_checkpoint,
    load_safetensors,
    safe_torch_load,
    save_safetensors,
)


def small_mae(**kw):
    cfg = dict(preset="small", img_size=224, patch_size=16, decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=4)
    cfg.update(kw)
    return MaskedAutoencoder(MAEConfig(**cfg))


def original_format_state_dict(model):
    """Our weights renamed to the flat keys of facebookresearch/mae's MaskedAutoencoderViT."""
    out = {k.removeprefix("encoder."): v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    names = {"mask_token": "mask_token", "embed.": "decoder_embed.", "pos_embed": "decoder_pos_embed",
             "blocks.": "decoder_blocks.", "norm.": "decoder_norm.", "pred.": "decoder_pred."}
    for k, v in model.state_dict().items():
        if k.startswith("decoder."):
            rest = k.removeprefix("decoder.")
            new = next(n + rest[len(o):] for o, n in names.items() if rest.startswith(o))
            out[new] = v
    return out


def test_timm_vit_small_loads_encoder_strict_and_matches_features():
    torch.manual_seed(0)
    model = small_mae().eval()
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
    result = vit.load_state_dict(encoder_state_dict_for_timm(model), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model.encoder.forward_features(x)
        theirs = vit.forward_features(x)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_timm_weights_load_into_our_encoder():
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=10).eval()
    model = small_mae().eval()
    sd = {k: v for k, v in vit.state_dict().items() if not k.startswith("head.")}
    model.encoder.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model.encoder.forward_features(x), vit.forward_features(x), atol=1e-5)


def write_original_checkpoint(model, path):
    args = argparse.Namespace(model="mae_vit_small_patch16", mask_ratio=0.75, norm_pix_loss=True, blr=1.5e-4)
    torch.save({"model": original_format_state_dict(model), "optimizer": {"state": {}, "param_groups": []},
                "epoch": 799, "scaler": {"scale": 65536.0}, "args": args}, path)


def test_original_mae_checkpoint_loads_with_namespace(tmp_path):
    torch.manual_seed(1)
    src = small_mae()
    path = tmp_path / "mae_pretrain.pth"
    write_original_checkpoint(src, path)
    ckpt = safe_torch_load(path)
    assert isinstance(ckpt["args"], argparse.Namespace) and ckpt["args"].mask_ratio == 0.75
    dst = small_mae()
    keys = load_mae_checkpoint(dst, path)
    assert keys == {"missing": [], "unexpected": []}
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": Exploit()}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.*refused"):
        safe_torch_load(path)
    with pytest.raises(UnsafeCheckpointError):
        load_mae_checkpoint(small_mae(), path)


def test_corrupt_checkpoint_names_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(Exception, match="broken.pth"):
        safe_torch_load(path)


@pytest.mark.parametrize("in_chans", [1, 5])
def test_three_channel_weights_into_other_channel_counts(tmp_path, in_chans):
    torch.manual_seed(2)
    src = small_mae()
    path = tmp_path / "rgb.pth"
    write_original_checkpoint(src, path)
    dst = small_mae(in_chans=in_chans)
    load_mae_checkpoint(dst, path)
    w_src = src.encoder.patch_embed.proj.weight
    w_dst = dst.encoder.patch_embed.proj.weight
    if in_chans == 1:
        assert torch.allclose(w_dst, w_src.sum(dim=1, keepdim=True), atol=1e-6)
        # a gray image gives the same embedding as the RGB model on its 3-channel copy
        gray = torch.randn(1, 1, 224, 224)
        with torch.no_grad():
            assert torch.allclose(dst.encoder.patch_embed(gray), src.encoder.patch_embed(gray.repeat(1, 3, 1, 1)), atol=1e-4)
    else:
        expected = w_src.repeat(1, 2, 1, 1)[:, :5] * (3 / 5)
        assert torch.allclose(w_dst, expected, atol=1e-6)
    assert dst.decoder.pred.weight.shape[0] == 16 * 16 * in_chans


@pytest.mark.parametrize("mode", ["recompute", "interpolate"])
def test_other_image_size_resamples_position_code(tmp_path, mode):
    src = small_mae()
    path = tmp_path / "mae.pth"
    write_original_checkpoint(src, path)
    dst = small_mae(img_size=(128, 256))
    load_mae_checkpoint(dst, path, pos_resample=mode)
    assert dst.encoder.pos_embed.shape == (1, 1 + 8 * 16, 384)
    out = dst(torch.randn(1, 3, 128, 256))
    assert torch.isfinite(out.loss)
    if mode == "recompute":
        fresh = small_mae(img_size=(128, 256))
        assert torch.allclose(dst.encoder.pos_embed, fresh.encoder.pos_embed)


def test_safetensors_round_trip(tmp_path):
    model = small_mae()
    path = save_safetensors(encoder_state_dict_for_timm(model), tmp_path / "enc.safetensors",
                            metadata={"preset": "small", "patch_size": 16})
    tensors, meta = load_safetensors(path)
    assert meta["preset"] == "small" and meta["patch_size"] == "16"
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(tensors[k], v)
    dst = small_mae()
    load_mae_checkpoint(dst, path, strict=False)
    assert torch.equal(dst.encoder.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("in_chans", [3, 1])
def test_original_mae_checkpoint_into_the_grid_stack(tmp_path, in_chans):
    """The image adapter's GridMAE takes an original MAE checkpoint: with 3 channels it then computes
    exactly what the plain MAE with the same weights computes; with 1 channel (X-ray) the RGB projection
    is summed, so a gray image embeds as the RGB model embeds its 3-channel copy."""
    from mae_domains.config import ModelConfig
    from mae_domains.models.embeddings import PatchEmbed2D
    from mae_domains.models.grid_mae import build_grid_mae

    torch.manual_seed(3)
    src = small_mae()
    path = tmp_path / "mae_pretrain_vit_small.pth"
    write_original_checkpoint(src, path)
    config = ModelConfig(preset="small", patch_size=16, in_chans=in_chans, decoder_embed_dim=64, decoder_depth=1,
                         decoder_num_heads=4, norm_pix_loss=False)
    dst = build_grid_mae(PatchEmbed2D(in_chans, 384, 16), config).eval()
    assert load_mae_checkpoint(dst, path) == {"missing": [], "unexpected": []}
    x = torch.randn(2, in_chans, 224, 224)
    with torch.no_grad():
        ref_in = x if in_chans == 3 else x.repeat(1, 3, 1, 1)
        assert torch.allclose(dst.encoder.forward_features(x), src.encoder.forward_features(ref_in), atol=1e-4)
        if in_chans == 3:
            a, b = src.eval()(x, mask_seeds=[5, 6]), dst(x, mask_seeds=[5, 6])
            assert torch.equal(a.mask, b.mask) and torch.allclose(a.loss, b.loss, rtol=1e-5)


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path):
    from mae_domains.weights import CheckpointFormatError

    src = small_mae()
    with torch.no_grad():
        src.encoder.blocks[0].attn.qkv.weight[0, 0] = float("nan")
    path = tmp_path / "poisoned.pth"
    write_original_checkpoint(src, path)
    with pytest.raises(CheckpointFormatError, match="poisoned.pth: refused.*NaN/Inf.*blocks.0.attn.qkv.weight"):
        load_mae_checkpoint(small_mae(), path)
