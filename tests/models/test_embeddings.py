"""Every embedding: layout, codes, round trip of targets, visible-only projection, every preset width."""

import pytest
import torch

from mae_domains.models.embeddings import (
    BandGroupPatchEmbed, ChannelSharedPatchEmbed, CubePatchEmbed3D, GridBatch, PatchEmbed2D, TemporalPatchEmbed,
    groups_from_band_names, SENTINEL2_GROUPS,
)
from mae_domains.models.presets import get_preset

PRESETS = ["tiny", "small", "base", "large"]
S2_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]


def make(kind, width, patch=8):
    """(embedding, batch, expected axis names, expected token count) for each embedding/axis combination."""
    gen = torch.Generator().manual_seed(0)
    if kind == "2d":
        return PatchEmbed2D(3, width, patch), GridBatch(torch.randn(2, 3, 16, 24, generator=gen)), ("y", "x"), 6
    if kind == "2d_scaled":
        emb = PatchEmbed2D(3, width, patch, reference_spacing=(10.0, 10.0))
        return emb, GridBatch(torch.randn(2, 3, 16, 16, generator=gen), meta={"spacing": torch.tensor([10.0, 30.0])}), ("y", "x"), 4
    if kind == "temporal":
        dates = torch.tensor([[[2020, 3], [2020, 7], [2021, 1]]] * 2, dtype=torch.float64)
        return TemporalPatchEmbed(4, width, patch), GridBatch(torch.randn(2, 3, 4, 16, 16, generator=gen), meta={"dates": dates}), ("time", "y", "x"), 12
    if kind == "temporal_add":
        return TemporalPatchEmbed(2, width, patch, date_mode="add"), GridBatch(torch.randn(2, 2, 2, 16, 16, generator=gen)), ("time", "y", "x"), 8
    if kind == "cube":
        emb = CubePatchEmbed3D(1, width, (4, 8, 8), reference_spacing=(2.0, 1.5, 1.5))
        meta = {"spacing": torch.tensor([[2.0, 1.5, 1.5], [3.0, 0.8, 0.8]])}
        return emb, GridBatch(torch.randn(2, 1, 8, 16, 16, generator=gen), meta=meta), ("z", "y", "x"), 8
    if kind == "groups":
        groups = groups_from_band_names(S2_BANDS, SENTINEL2_GROUPS)
        return BandGroupPatchEmbed(groups, width, patch, group_names=list(SENTINEL2_GROUPS)), GridBatch(torch.randn(2, 12, 16, 16, generator=gen)), ("group", "y", "x"), 12
    if kind == "groups_add":
        return BandGroupPatchEmbed([[0, 1], [2]], width, patch, code_mode="add"), GridBatch(torch.randn(2, 3, 16, 16, generator=gen)), ("group", "y", "x"), 8
    if kind == "channels":
        emb = ChannelSharedPatchEmbed(width, patch, ["DNA", "RNA", "ER", "AGP"], code_widths=[64])
        meta = {"channel_names": ["RNA", "DNA", "Mito"]}
        return emb, GridBatch(torch.randn(2, 3, 16, 16, generator=gen), meta=meta), ("channel", "y", "x"), 12
    raise ValueError(kind)


KINDS = ["2d", "2d_scaled", "temporal", "temporal_add", "cube", "groups", "groups_add", "channels"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_shapes_for_every_preset(kind, preset):
    width = get_preset(preset).embed_dim
    emb, batch, names, n = make(kind, width)
    grid = emb(batch)
    assert grid.layout.names == names
    assert grid.tokens.shape == (2, n, width) and grid.layout.num_tokens == n
    assert grid.codes.shape[-2:] == (n, width) and torch.isfinite(grid.codes).all()
    assert grid.codes_at(64).shape[-2:] == (n, 64)  # the decoder's width


@pytest.mark.parametrize("kind", KINDS)
def test_target_round_trip(kind):
    emb, batch, _, n = make(kind, 64)
    layout = emb.layout(batch)
    patches = emb.target_patches(batch.images, layout)
    assert patches.shape == (2, n, emb.target_dim)
    back = emb.unpatchify(patches, layout)
    if isinstance(emb, BandGroupPatchEmbed):  # bands in no group (B1, B9 for SatMAE) come back as zeros
        used = sorted({b for g in emb.groups for b in g})
        unused = [b for b in range(batch.images.shape[1]) if b not in used]
        assert torch.equal(back[:, used], batch.images[:, used]) and not back[:, unused].any()
    else:
        assert torch.equal(back, batch.images)


@pytest.mark.parametrize("kind", KINDS)
def test_visible_only_projection_equals_full(kind):
    emb, batch, _, n = make(kind, 64)
    full = emb(batch)
    ids = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(i))[: n // 2] for i in range(2)])
    sub = emb(batch, ids)
    expected = torch.gather(full.tokens, 1, ids.unsqueeze(-1).expand(-1, -1, 64))
    assert torch.allclose(sub.tokens, expected, atol=1e-5)
    assert torch.equal(sub.ids, ids)


def test_2d_embedding_matches_timm_patch_embed_and_mae_code():
    from timm.layers import PatchEmbed

    from mae_domains.grid.pos_embed import sincos_2d

    emb = PatchEmbed2D(3, 64, 8)
    timm_embed = PatchEmbed(img_size=(16, 24), patch_size=8, in_chans=3, embed_dim=64)
    timm_embed.proj.load_state_dict(emb.proj.state_dict())
    x = torch.randn(2, 3, 16, 24)
    grid = emb(x)
    assert torch.allclose(grid.tokens, timm_embed(x) + sincos_2d(64, (2, 3)), atol=1e-6)


def test_scaled_code_differs_per_sample():
    emb, batch, _, _ = make("2d_scaled", 64)
    codes = emb(batch).codes
    assert codes.shape[0] == 2 and not torch.allclose(codes[0], codes[1])
    unscaled = PatchEmbed2D(3, 64, 8)(batch.images).codes
    assert torch.allclose(codes[0], unscaled[0])  # spacing equal to the reference: MAE's table


def test_band_groups_target_per_group_in_group_order():
    groups = [[3, 0], [1, 2, 4]]
    emb = BandGroupPatchEmbed(groups, 64, 8)
    images = torch.arange(5, dtype=torch.float32).reshape(1, 5, 1, 1).expand(1, 5, 8, 8) + 1  # band b == b + 1
    layout = emb.layout(GridBatch(images))
    target = emb.target_patches(images, layout)  # (1, 2, 64 * 3): (p, q, slot) order
    slots = target.reshape(1, 2, 64, 3)
    assert slots[0, 0, 0].tolist() == [4.0, 1.0, 0.0]  # group 0: bands 3, 0, then a padding slot
    assert slots[0, 1, 0].tolist() == [2.0, 3.0, 5.0]
    counts = emb.target_weight_count(layout, torch.device("cpu"))
    assert counts.tolist() == [128.0, 192.0]


def test_groups_from_band_names_reports_missing():
    assert groups_from_band_names(S2_BANDS, {"rgb": ("B4", "B3", "B2")}) == [[3, 2, 1]]
    with pytest.raises(ValueError, match="B8A"):
        groups_from_band_names(["B2", "B3"], {"red_edge": ("B8A",)})


def test_channel_code_follows_names_not_positions():
    emb = ChannelSharedPatchEmbed(64, 8, ["DNA", "RNA", "ER"])
    x = torch.randn(1, 2, 8, 8)
    a = emb(GridBatch(x, meta={"channel_names": ["DNA", "RNA"]}))
    b = emb(GridBatch(x.flip(1), meta={"channel_names": ["RNA", "DNA"]}))
    # the same channel (image and name) gives the same token wherever it sits
    assert torch.allclose(a.tokens[0, 0], b.tokens[0, 1]) and torch.allclose(a.tokens[0, 1], b.tokens[0, 0])
    unknown = emb(GridBatch(x, meta={"channel_names": ["new1", "new2"]}))
    assert unknown.tokens.shape == (1, 2, 64)  # unseen channels use the fallback code


def test_channel_shared_any_count_and_missing_width_error():
    emb = ChannelSharedPatchEmbed(64, 8, ["a"])
    for c in (1, 3, 6):
        assert emb(torch.randn(1, c, 16, 16)).tokens.shape == (1, 4 * c, 64)
    with pytest.raises(ValueError, match="code_widths"):
        emb(torch.randn(1, 1, 8, 8)).codes_at(32)


def test_token_validity_from_pixel_mask():
    emb = PatchEmbed2D(1, 64, 8)
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    valid[:, :8, :8] = False  # first patch entirely nodata
    valid[:, 8:, 8:12] = False  # last patch half nodata: still valid
    grid = emb(GridBatch(torch.randn(1, 1, 16, 16), valid=valid))
    assert grid.valid.tolist() == [[False, True, True, True]]
