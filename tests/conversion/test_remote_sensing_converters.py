"""Remote-sensing checkpoints into our models, bands by name: RGB into Sentinel-2 (red on B4, green on B3,
blue on B2, never by index), SatMAE's group-channel model (forward equal to SatMAE's encoder), SatMAE
temporal, Prithvi-100M (Conv3d tubelets of one frame) and Scale-MAE (encoder only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mae_domains.conversion import convert_into
from mae_domains.grid import GridBatch
from mae_domains.runs import build_model
from mae_domains.weights import CheckpointFormatError
from tests.conversion.reference import (
    mae_2d_table, mae_decoder_state, prefixed, random_blocks, random_norm, run_blocks, sincos_1d,
)

MICRO = {"preset": "micro", "img_size": 32, "patch_size": 8, "decoder_embed_dim": 32, "decoder_depth": 1,
         "decoder_num_heads": 4}
SATMAE_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
SATMAE_GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))


def rgb_vit_state(width: int = 64, depth: int = 2, heads: int = 4, patch: int = 8, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    state = {"patch_embed.proj.weight": torch.randn(width, 3, patch, patch), "patch_embed.proj.bias": torch.randn(width),
             "cls_token": torch.randn(1, 1, width), "pos_embed": mae_2d_table(width, 4)}
    state.update(prefixed(random_blocks(width, depth, heads, seed + 1), "blocks."))
    state.update(prefixed(random_norm(width, seed + 2), "norm."))
    return state


def build(adapter: str, model: dict, options: dict | None = None):
    adapter_obj, net, _ = build_model({"adapter": adapter, "model": model, "data": {"options": options or {}}})
    return adapter_obj, net


def test_rgb_weights_put_each_colour_on_its_sentinel2_band():
    adapter, model = build("remote_sensing.multispectral", MICRO)
    state = rgb_vit_state()
    report = convert_into(model, state, adapter, source="rgb.pth")
    rgb = state["patch_embed.proj.weight"]  # channels: red, green, blue
    group = model.encoder.embedding.groups[0]
    names = [adapter.bands[i] for i in group]
    weight = model.encoder.embedding.projs[0].weight.detach()
    assert names == ["B2", "B3", "B4", "B8"]
    assert torch.equal(weight[:, names.index("B4")], rgb[:, 0])  # red
    assert torch.equal(weight[:, names.index("B3")], rgb[:, 1])  # green
    assert torch.equal(weight[:, names.index("B2")], rgb[:, 2])  # blue
    assert not torch.equal(weight[:, names.index("B2")], rgb[:, 0])  # index tiling would put red on B2
    assert torch.count_nonzero(weight[:, names.index("B8")]) == 0  # no source: zero, reported
    text = report.render()
    assert "red -> B4" in text and "green -> B3" in text and "blue -> B2" in text and "B8 zero-initialized" in text
    assert "group B11+B12: no band in the checkpoint" in text


def test_rgb_weights_into_a_shared_projection_map_by_name_in_any_band_order():
    bands = ["B8", "B4", "B11", "B2", "B3", "B12"]
    adapter, model = build("remote_sensing.temporal", MICRO, {"bands": bands})
    state = rgb_vit_state()
    convert_into(model, state, adapter, source="rgb.pth")
    weight = model.encoder.embedding.proj.weight.detach()
    rgb = state["patch_embed.proj.weight"]
    assert torch.equal(weight[:, bands.index("B4")], rgb[:, 0])
    assert torch.equal(weight[:, bands.index("B3")], rgb[:, 1])
    assert torch.equal(weight[:, bands.index("B2")], rgb[:, 2])
    for band in ("B8", "B11", "B12"):
        assert torch.count_nonzero(weight[:, bands.index(band)]) == 0


def satmae_group_state(width: int = 64, group_width: int = 16, depth: int = 2, heads: int = 4, patch: int = 8,
                       decoder_width: int = 32, decoder_group_width: int = 8, seed: int = 0) -> dict:
    """``MaskedAutoencoderGroupChannelViT`` keys and shapes at a tiny width (channel_embed = group code width)."""
    torch.manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for i, group in enumerate(SATMAE_GROUPS):
        state[f"patch_embed.{i}.proj.weight"] = torch.randn(width, len(group), patch, patch) * 0.1
        state[f"patch_embed.{i}.proj.bias"] = torch.randn(width) * 0.1
        state[f"decoder_pred.{i}.weight"] = torch.randn(len(group) * patch**2, decoder_width)
        state[f"decoder_pred.{i}.bias"] = torch.randn(len(group) * patch**2)
    state["cls_token"] = torch.randn(1, 1, width)
    state["pos_embed"] = mae_2d_table(width - group_width, 4)
    state["channel_embed"] = torch.from_numpy(sincos_1d(group_width, torch.arange(3).numpy())).float().unsqueeze(0)
    state.update(prefixed(random_blocks(width, depth, heads, seed + 1), "blocks."))
    state.update(prefixed(random_norm(width, seed + 2), "norm."))
    decoder = mae_decoder_state(width, decoder_width, 1, 4, 1, seed + 3)
    for key in ("decoder_pred.weight", "decoder_pred.bias"):
        decoder.pop(key)
    state.update(decoder)
    state["decoder_pos_embed"] = mae_2d_table(decoder_width - decoder_group_width, 4)
    state["decoder_channel_embed"] = torch.from_numpy(sincos_1d(decoder_group_width, torch.arange(4).numpy())).float()[None]
    return state


def satmae_encoder_reference(state: dict, images: torch.Tensor, depth: int = 2, heads: int = 4) -> torch.Tensor:
    """SatMAE's ``forward_encoder`` without masking, on images in SatMAE's 10-band order."""
    tokens = []
    for i, group in enumerate(SATMAE_GROUPS):
        conv = torch.nn.functional.conv2d(images[:, list(group)], state[f"patch_embed.{i}.proj.weight"],
                                          state[f"patch_embed.{i}.proj.bias"], stride=8)
        tokens.append(conv.flatten(2).transpose(1, 2))
    x = torch.stack(tokens, dim=1)  # (N, G, L, D)
    g, length = x.shape[1], x.shape[2]
    pos = state["pos_embed"][:, 1:].unsqueeze(1).expand(-1, g, -1, -1)
    channel = state["channel_embed"].unsqueeze(2).expand(-1, -1, length, -1)
    x = (x + torch.cat([pos, channel], dim=-1)).reshape(x.shape[0], g * length, -1)
    x = torch.cat([state["cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
    blocks = random_blocks(x.shape[-1], depth, heads, 0)
    blocks.load_state_dict({k[len("blocks."):]: v for k, v in state.items() if k.startswith("blocks.")})
    norm = random_norm(x.shape[-1], 0)
    norm.load_state_dict({"weight": state["norm.weight"], "bias": state["norm.bias"]})
    return run_blocks(blocks, norm, x)


def test_satmae_group_weights_give_satmaes_encoder_output_with_bands_in_our_order():
    adapter, model = build("remote_sensing.multispectral", MICRO)  # bands B2 B3 B4 B8 | B5 B6 B7 B8A | B11 B12
    state = satmae_group_state()
    report = convert_into(model, state, adapter, source="satmae.pth")
    assert report.family == "satmae_group"
    torch.manual_seed(1)
    satmae_images = torch.randn(2, 10, 32, 32)
    ours = satmae_images[:, [SATMAE_BANDS.index(b) for b in adapter.bands]]
    model.eval()
    with torch.no_grad():
        got = model.encoder.forward_features(ours)
        want = satmae_encoder_reference(state, satmae_images)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # decoder: SatMAE's per-group head rows (band, row, column) -> ours (row, column, band)
    head = model.head.heads[0].weight.detach()
    src = state["decoder_pred.0.weight"].reshape(4, 64, -1)  # (c, p*q, Dd)
    for j, band in enumerate(("B2", "B3", "B4", "B8")):
        c = [SATMAE_BANDS[i] for i in SATMAE_GROUPS[0]].index(band)
        assert torch.equal(head.reshape(64, 4, -1)[:, j], src[c])
    assert torch.equal(model.decoder.embed.weight.detach(), state["decoder_embed.weight"])
    assert not report.decoder_initialized
    text = report.render()
    assert "decoder_pred.{i}: pixel rows reordered" in text and "group code width" in text


def test_satmae_group_weights_follow_bands_when_our_band_order_differs():
    groups = [["B4", "B3", "B2", "B8"], ["B8A", "B7", "B6", "B5"], ["B12", "B11"]]
    adapter, model = build("remote_sensing.multispectral", MICRO, {"groups": groups})
    state = satmae_group_state()
    convert_into(model, state, adapter, source="satmae.pth")
    weight = model.encoder.embedding.projs[0].weight.detach()
    source = state["patch_embed.0.proj.weight"]  # SatMAE group 0: B2 B3 B4 B8
    assert torch.equal(weight[:, 0], source[:, 2])  # our first band is B4
    assert torch.equal(weight[:, 2], source[:, 0])  # our third band is B2


def test_satmae_group_weights_refuse_a_model_without_band_groups():
    adapter, model = build("remote_sensing.temporal", MICRO)
    with pytest.raises(CheckpointFormatError, match="satmae_group weights, which convert into remote_sensing.multispectral, not into adapter remote_sensing.temporal"):
        convert_into(model, satmae_group_state(), adapter, source="satmae.pth")


LARGE_1 = {"preset": "large", "depth": 1, "img_size": 32, "patch_size": 16, "decoder_embed_dim": 512,
           "decoder_depth": 1, "decoder_num_heads": 16}


@pytest.mark.slow  # real ViT-L / ViT-B widths (one block)
def test_satmae_temporal_weights_map_rgb_onto_bands_and_state_the_date_split():
    adapter, model = build("remote_sensing.temporal", LARGE_1)
    state = rgb_vit_state(width=1024, depth=1, heads=16, patch=16)
    state["pos_embed"] = mae_2d_table(1024 - 384, 2)
    state.update(mae_decoder_state(1024, 512, 1, 16, 16 * 16 * 3, seed=5))
    state["decoder_pos_embed"] = mae_2d_table(512 - 192, 2)
    report = convert_into(model, state, adapter, source="fmow_temporal.pth")
    assert report.family == "satmae_temporal"
    bands = list(adapter.bands)
    weight = model.encoder.embedding.proj.weight.detach()
    assert torch.equal(weight[:, bands.index("B4")], state["patch_embed.proj.weight"][:, 0])
    assert torch.equal(weight[:, bands.index("B2")], state["patch_embed.proj.weight"][:, 2])
    head = model.head.pred.weight.detach().reshape(256, len(bands), -1)
    src = state["decoder_pred.weight"].reshape(256, 3, -1)  # SatMAE temporal: (p, q, c)
    assert torch.equal(head[:, bands.index("B4")], src[:, 0])
    assert torch.equal(head[:, bands.index("B3")], src[:, 1])
    assert "date_preset=satmae with date_fraction null reproduces its split" in report.render()


def satmae_temporal_state(width: int, heads: int) -> dict:
    """``MaskedAutoencoderViT`` of ``models_mae_temporal.py`` (one encoder and one decoder block): position
    tables of ``width - 384`` and ``512 - 192`` dims, RGB patch embedding, decoder_pred in (p, q, c) order."""
    state = rgb_vit_state(width=width, depth=1, heads=heads, patch=16)
    state["pos_embed"] = mae_2d_table(width - 384, 2)
    state.update(mae_decoder_state(width, 512, 1, 16, 16 * 16 * 3, seed=5))
    state["decoder_pred.weight"] = state["decoder_pred.weight"] / 512 ** 0.5  # outputs of order 1, as trained
    state["decoder_pos_embed"] = mae_2d_table(512 - 192, 2)
    return state


def satmae_date_code(timestamps: torch.Tensor, part: int) -> torch.Tensor:
    """``torch.cat([get_1d_sincos_pos_embed_from_grid_torch(part, timestamps[:, k]) for k in 0..2])``."""
    omega = 1.0 / 10000 ** (torch.arange(part // 2, dtype=torch.float64) / (part / 2.0))
    codes = []
    for k in range(3):
        out = torch.einsum("m,d->md", timestamps.reshape(-1, 3)[:, k].double(), omega)
        codes.append(torch.cat([torch.sin(out), torch.cos(out)], dim=1))
    return torch.cat(codes, dim=1).float()


def satmae_temporal_reference(state: dict, images: torch.Tensor, timestamps: torch.Tensor, ids_keep: torch.Tensor,
                              heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SatMAE temporal ``forward_encoder`` and ``forward_decoder`` (3 frames, RGB) on the kept ids ``ids_keep``:
    the encoder output (CLS first) and the predictions of every token (CLS dropped)."""
    n, t = images.shape[:2]
    x = torch.cat([F.conv2d(images[:, i], state["patch_embed.proj.weight"], state["patch_embed.proj.bias"],
                            stride=16).flatten(2).transpose(1, 2) for i in range(t)], dim=1)
    ts = satmae_date_code(timestamps, 128).reshape(n, t, 1, -1).expand(-1, -1, x.shape[1] // t, -1)
    ts = ts.reshape(n, x.shape[1], -1)
    x = x + torch.cat([state["pos_embed"][:, 1:].repeat(n, t, 1), ts], dim=-1)
    x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, x.shape[-1]))
    x = torch.cat([state["cls_token"].expand(n, -1, -1), x], dim=1)
    width = x.shape[-1]
    blocks, norm = random_blocks(width, 1, heads, 0), random_norm(width, 0)
    blocks.load_state_dict({k[len("blocks."):]: v for k, v in state.items() if k.startswith("blocks.")})
    norm.load_state_dict({"weight": state["norm.weight"], "bias": state["norm.bias"]})
    latent = run_blocks(blocks, norm, x)
    # forward_decoder
    length = t * state["pos_embed"].shape[1] - t
    ids_restore = torch.argsort(torch.cat([ids_keep, torch.stack([torch.tensor(
        [i for i in range(length) if i not in row]) for row in ids_keep.tolist()])], dim=1), dim=1)
    y = latent @ state["decoder_embed.weight"].T + state["decoder_embed.bias"]
    mask_tokens = state["mask_token"].repeat(n, length + 1 - y.shape[1], 1)
    y_ = torch.gather(torch.cat([y[:, 1:], mask_tokens], dim=1), 1, ids_restore.unsqueeze(-1).repeat(1, 1, y.shape[2]))
    y = torch.cat([y[:, :1], y_], dim=1)
    ts = satmae_date_code(timestamps, 64).reshape(n, t, 1, -1).expand(-1, -1, y.shape[1] // t, -1).reshape(n, -1, 192)
    ts = torch.cat([torch.zeros(n, 1, 192), ts], dim=1)
    table = state["decoder_pos_embed"]
    y = y + torch.cat([torch.cat([table[:, :1], table[:, 1:].repeat(1, t, 1)], dim=1).expand(n, -1, -1), ts], dim=-1)
    dblocks, dnorm = random_blocks(512, 1, 16, 0), random_norm(512, 0)
    dblocks.load_state_dict({k[len("decoder_blocks."):]: v for k, v in state.items()
                             if k.startswith("decoder_blocks.")})
    dnorm.load_state_dict({"weight": state["decoder_norm.weight"], "bias": state["decoder_norm.bias"]})
    pred = run_blocks(dblocks, dnorm, y) @ state["decoder_pred.weight"].T + state["decoder_pred.bias"]
    return latent, pred[:, 1:]


@pytest.mark.slow  # real ViT-B / ViT-L widths (one block)
@pytest.mark.parametrize("preset, width, heads", [("base", 768, 12), ("large", 1024, 16)])
def test_satmae_temporal_advice_gives_satmaes_encoder_and_decoder(preset, width, heads):
    """The converter's advice followed end to end: with date_preset satmae the converted model's encoder and
    decoder equal SatMAE temporal's on the same frames, dates and kept tokens; the default date code is
    reported as different."""
    model_config = {**LARGE_1, "preset": preset}
    state = satmae_temporal_state(width, heads)
    adapter, model = build("remote_sensing.temporal", model_config, {"bands": ["B4", "B3", "B2"]})
    text = convert_into(model, state, adapter, source="fmow_temporal.pth").render()
    assert f"384 of {width} encoder dims, 192 of 512 decoder dims" in text
    assert "date_preset=satmae with date_fraction null reproduces its split" in text
    assert "this model codes dates as date_preset=null" in text  # ours is not SatMAE's: said so
    adapter, model = build("remote_sensing.temporal", model_config,
                           {"bands": ["B4", "B3", "B2"], "date_preset": "satmae"})
    assert "this model codes dates" not in convert_into(model, state, adapter, source="fmow_temporal.pth").render()
    torch.manual_seed(2)
    images = torch.randn(2, 3, 3, 32, 32)  # (B, T, RGB, H, W); 3 frames x 2 x 2 tokens
    dates = [["2016-03-05T14:20:00", "2017-11-30", "2019-07-04 09:05"],
             ["2003-01-01", "2010-06-15T08:00", "2021-12-31"]]
    # SatMAE's inputs written by hand: (year - 2002, month - 1, hour)
    timestamps = torch.tensor([[[14, 2, 14], [15, 10, 0], [17, 6, 9]], [[1, 0, 0], [8, 5, 8], [19, 11, 0]]],
                              dtype=torch.float32)
    meta = adapter.batch_meta({"meta": [{"dates": d} for d in dates]}, torch.device("cpu"))
    batch = GridBatch(images, meta=meta)
    model.eval()
    with torch.no_grad():
        out = model(batch, mask_seeds=[3, 4])
        latent = model.encoder.forward_visible(batch, out.masking.ids_keep).sequence()
        want_latent, want_pred = satmae_temporal_reference(state, images, timestamps, out.masking.ids_keep, heads)
    torch.testing.assert_close(latent, want_latent, atol=1e-5, rtol=1e-5)
    want = torch.gather(want_pred, 1, out.query_ids.unsqueeze(-1).expand(-1, -1, want_pred.shape[-1]))
    torch.testing.assert_close(out.pred, want, atol=1e-5, rtol=1e-5)


def prithvi_state(seed: int = 0) -> dict:
    """Prithvi-100M's keys and shapes (ViT-B, 6 HLS bands, Conv3d tubelet 1 x 16 x 16, decoder 512),
    one encoder and one decoder block."""
    torch.manual_seed(seed)
    state = {"patch_embed.proj.weight": torch.randn(768, 6, 1, 16, 16) * 0.02, "patch_embed.proj.bias": torch.randn(768),
             "cls_token": torch.randn(1, 1, 768), "pos_embed": torch.zeros(1, 1 + 3 * 4, 768)}
    state.update(prefixed(random_blocks(768, 1, 12, seed + 1), "blocks."))
    state.update(prefixed(random_norm(768, seed + 2), "norm."))
    state.update(mae_decoder_state(768, 512, 1, 16, 16 * 16 * 6, seed=seed + 3))
    state["decoder_pos_embed"] = torch.zeros(1, 1 + 3 * 4, 512)
    return state


BASE_1 = {"preset": "base", "depth": 1, "img_size": 32, "patch_size": 16, "decoder_embed_dim": 512,
          "decoder_depth": 1, "decoder_num_heads": 16}


@pytest.mark.slow  # real ViT-L / ViT-B widths (one block)
def test_prithvi_tubelets_of_one_frame_become_the_shared_2d_projection():
    bands = ["B4", "B3", "B2", "B8A", "B11", "B12"]  # our order differs from Prithvi's B2 B3 B4 B8A B11 B12
    adapter, model = build("remote_sensing.temporal", BASE_1, {"bands": bands})
    state = prithvi_state()
    report = convert_into(model, state, adapter, source="Prithvi_100M.pt")
    assert report.family == "prithvi"
    weight = model.encoder.embedding.proj.weight.detach()
    source = state["patch_embed.proj.weight"][:, :, 0]
    prithvi = ["B2", "B3", "B4", "B8A", "B11", "B12"]
    for j, band in enumerate(bands):
        assert torch.equal(weight[:, j], source[:, prithvi.index(band)])
    # one frame through our projection equals Prithvi's Conv3d on that frame
    torch.manual_seed(3)
    frames = torch.randn(1, 6, 3, 32, 32)  # Prithvi's (B, C, T, H, W), its band order
    ref = torch.nn.functional.conv3d(frames, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=(1, 16, 16))
    ours_in = frames[:, [prithvi.index(b) for b in bands]].permute(0, 2, 1, 3, 4)  # (B, T, C, H, W)
    got = model.encoder.embedding.proj(ours_in[:, 1])
    torch.testing.assert_close(got, ref[:, :, 1], atol=1e-5, rtol=1e-5)
    head = model.head.pred.weight.detach().reshape(256, 6, -1)
    src = state["decoder_pred.weight"].reshape(256, 6, -1)  # (tubelet=1, p, q, c)
    for j, band in enumerate(bands):
        assert torch.equal(head[:, j], src[:, prithvi.index(band)])
    assert torch.equal(model.decoder.blocks[0].attn.qkv.weight.detach(), state["decoder_blocks.0.attn.qkv.weight"])
    assert "Conv3d tubelet 1 x p x p -> Conv2d" in report.render()


@pytest.mark.slow  # real ViT-L / ViT-B widths (one block)
def test_prithvi_eo2_prefixes_are_read_too():
    adapter, model = build("remote_sensing.temporal", BASE_1)
    state = {("decoder." if k.startswith(("decoder_", "mask_token")) else "encoder.") + k: v
             for k, v in prithvi_state().items()}
    assert convert_into(model, state, adapter, source="prithvi_eo2.pt").family == "prithvi"


def test_scale_mae_encoder_goes_into_the_scale_aware_model_and_its_decoder_is_left():
    adapter, model = build("remote_sensing.scale", MICRO)
    state = rgb_vit_state()
    state.update({"fpn.fpn1.0.weight": torch.randn(4, 4), "fcn_high.conv.weight": torch.randn(4, 4),
                  "mask_token_decoder": torch.randn(1, 1, 32)})
    state.update(mae_decoder_state(64, 32, 1, 4, 8 * 8 * 3, seed=4))
    report = convert_into(model, state, adapter, source="scalemae-vitlarge.pth")
    assert report.family == "scale_mae"
    bands = list(adapter.bands)
    weight = model.encoder.embedding.proj.weight.detach()
    if "B4" in bands:
        assert torch.equal(weight[:, bands.index("B4")], state["patch_embed.proj.weight"][:, 0])
    assert torch.equal(model.encoder.blocks[1].mlp.fc2.weight.detach(), state["blocks.1.mlp.fc2.weight"])
    assert report.decoder_initialized
    assert "GSD-scaled" in report.render()


def test_our_own_weights_load_into_other_bands_by_name():
    from pathlib import Path

    from mae_domains.runs.initial_weights import load_initial_weights
    from mae_domains.runs.weight_files import WeightsSource

    source_config = {"adapter": "remote_sensing.multispectral", "model": MICRO,
                     "data": {"options": {"groups": [["B2", "B3", "B4", "B8"], ["B11", "B12"]]}}}
    _, trained = build("remote_sensing.multispectral", MICRO, source_config["data"]["options"])
    groups = [["B8", "B4", "B3"], ["B12", "B11", "B5"]]
    adapter, model = build("remote_sensing.multispectral", MICRO, {"groups": groups})
    source = WeightsSource("checkpoint", Path("run/checkpoint.pt"), dict(trained.state_dict()), source_config)
    report = load_initial_weights(model, "run", adapter, None, source)
    assert report.family == "other_bands"
    old0 = trained.encoder.embedding.projs[0].weight.detach()  # B2 B3 B4 B8
    old1 = trained.encoder.embedding.projs[1].weight.detach()  # B11 B12
    new0 = model.encoder.embedding.projs[0].weight.detach()  # B8 B4 B3
    new1 = model.encoder.embedding.projs[1].weight.detach()  # B12 B11 B5
    assert torch.equal(new0[:, 0], old0[:, 3]) and torch.equal(new0[:, 1], old0[:, 2]) and torch.equal(new0[:, 2], old0[:, 1])
    assert torch.equal(new1[:, 0], old1[:, 1]) and torch.equal(new1[:, 1], old1[:, 0])
    assert torch.count_nonzero(new1[:, 2]) == 0  # B5 was not trained
    head_old = trained.head.heads[1].weight.detach().reshape(64, 4, -1)  # padded to the largest group
    head_new = model.head.heads[1].weight.detach().reshape(64, 3, -1)
    assert torch.equal(head_new[:, 0], head_old[:, 1]) and torch.equal(head_new[:, 1], head_old[:, 0])
    assert torch.equal(model.encoder.blocks[1].attn.qkv.weight, trained.encoder.blocks[1].attn.qkv.weight)
    assert torch.equal(model.decoder.embed.weight, trained.decoder.embed.weight)
    assert "B5 zero-initialized" in report.render()


def scale_mae_pos_embed(width: int, side: int, res: torch.Tensor) -> torch.Tensor:
    """Scale-MAE's ``get_2d_sincos_pos_embed_with_resolution`` (formula written out): the patch grid
    multiplied by each sample's resolution, then MAE's 2D sin-cos; a zero CLS row."""
    grid = torch.stack(torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                      indexing="xy"))
    grid = torch.einsum("chw,n->cnhw", grid, res)
    omega = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float32) / (width / 4))

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("m,d->md", pos.reshape(-1), omega)
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    emb = torch.cat([one_axis(grid[0]), one_axis(grid[1])], dim=1).reshape(len(res), side * side, width)
    return torch.cat([torch.zeros(len(res), 1, width), emb], dim=1)


def test_scale_mae_encoder_output_is_reproduced_at_each_samples_gsd():
    adapter, model = build("remote_sensing.scale", MICRO, {"bands": ["B4", "B3", "B2"]})
    state = rgb_vit_state()
    convert_into(model, state, adapter, family="scale_mae", source="scalemae.pth")
    torch.manual_seed(5)
    images = torch.randn(2, 3, 32, 32)
    res = torch.tensor([2.0, 0.5])  # Scale-MAE's input_res: GSD relative to the reference
    gsd = res[:, None].expand(-1, 2) * adapter.reference_gsd
    model.eval()
    with torch.no_grad():
        ours = model.encoder.forward_features({"image": images, "meta": {"spacing": gsd}})
        x = torch.nn.functional.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=8)
        x = x.flatten(2).transpose(1, 2)
        pos = scale_mae_pos_embed(64, 4, res)
        x = torch.cat([state["cls_token"].expand(2, -1, -1) + pos[:, :1], x + pos[:, 1:]], dim=1)
        blocks = random_blocks(64, 2, 4, 0).eval()
        blocks.load_state_dict({k[len("blocks."):]: v for k, v in state.items() if k.startswith("blocks.")})
        norm = random_norm(64, 0)
        norm.load_state_dict({"weight": state["norm.weight"], "bias": state["norm.bias"]})
        reference = run_blocks(blocks, norm, x)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
