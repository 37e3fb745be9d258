"""Axes, layouts and codes: widths for every preset, MAE-exact 2D code, spacing, per-index hooks."""

import pytest
import torch

from mae_domains.grid import (
    GridLayout, NamedCodeTable, concat_codes, continuous_axis, expand_along_axis, fraction_width, index_codes,
    nominal_axis, ordinal_axis, spatial_axis, spatial_codes, split_width, value_codes,
)
from mae_domains.grid.pos_embed import sincos_2d
from mae_domains.models.presets import VIT_PRESETS

WIDTHS = sorted({p.embed_dim for p in VIT_PRESETS.values()} | {512, 256})


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("weights", [[1, 1], [1, 1, 1], [6, 6, 4], [3, 1]])
def test_split_width_even_and_exact_for_every_width(width, weights):
    parts = split_width(width, weights)
    assert sum(parts) == width and all(p % 2 == 0 and p > 0 for p in parts)


def test_split_width_known_values():
    assert split_width(1024, [6, 6, 4]) == [384, 384, 256]
    assert split_width(768, [1, 1, 1]) == [256, 256, 256]
    assert fraction_width(1024, 0.25) == 256
    assert fraction_width(192, 0.25) == 48


@pytest.mark.parametrize("width", WIDTHS)
def test_spatial_codes_2d_3d_any_width(width):
    l2 = GridLayout((spatial_axis("y", 3), spatial_axis("x", 4)))
    l3 = GridLayout((spatial_axis("z", 2), spatial_axis("y", 3), spatial_axis("x", 4)))
    assert spatial_codes(l2, width).shape == (1, 12, width)
    codes = spatial_codes(l3, width)
    assert codes.shape == (1, 24, width) and torch.isfinite(codes).all()
    assert codes.dtype == torch.float32
    assert torch.unique(codes[0], dim=0).shape[0] == 24  # every position has its own code


def test_unscaled_2d_code_is_mae_table():
    layout = GridLayout((spatial_axis("y", 5), spatial_axis("x", 7)))
    assert torch.equal(spatial_codes(layout, 384)[0], sincos_2d(384, (5, 7)))


def test_spacing_scales_positions_per_sample():
    layout = GridLayout((spatial_axis("y", 4), spatial_axis("x", 4)))
    codes = spatial_codes(layout, 64, scale=torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    assert codes.shape == (2, 16, 64)
    assert torch.allclose(codes[0], spatial_codes(layout, 64)[0])
    # at twice the spacing, token (0, 1) sits where token (0, 2) sits at unit spacing
    assert torch.allclose(codes[1, 1], codes[0, 2], atol=1e-6)


def test_layout_coordinates_and_signature():
    layout = GridLayout((ordinal_axis("group", 3), spatial_axis("y", 2), spatial_axis("x", 4)))
    assert layout.num_tokens == 24 and layout.shape == (3, 2, 4)
    assert layout.coordinates("group").tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert layout.coordinates("x")[:5].tolist() == [0, 1, 2, 3, 0]
    assert torch.equal(layout.all_coordinates()[:, 1], layout.coordinates("y"))
    assert layout.without(["group"]).names == ("y", "x")
    with pytest.raises(KeyError):
        layout.index("time")
    assert layout.signature() != GridLayout((ordinal_axis("group", 2), spatial_axis("y", 2), spatial_axis("x", 4))).signature()


def test_nominal_axis_requires_names():
    with pytest.raises(ValueError):
        from mae_domains.grid import Axis, AxisKind

        Axis("channel", AxisKind.NOMINAL, 3)
    assert nominal_axis("channel", ["DNA", "RNA"]).labels == ("DNA", "RNA")


def test_per_index_codes_expand_and_concat():
    layout = GridLayout((continuous_axis("time", 3), spatial_axis("y", 2), spatial_axis("x", 2)))
    dates = torch.tensor([[[2020, 1], [2020, 6], [2021, 1]]], dtype=torch.float64)
    date = expand_along_axis(value_codes(16, dates), layout, "time")
    assert date.shape == (1, 12, 16)
    assert torch.equal(date[0, 0], date[0, 3]) and not torch.equal(date[0, 0], date[0, 4])
    full = concat_codes(spatial_codes(layout, 48), date)
    assert full.shape == (1, 12, 64)
    assert index_codes(8, 3).shape == (1, 3, 8)


def test_named_code_table_by_name_with_fallback():
    table = NamedCodeTable(["DNA", "RNA", "ER"], 8)
    a = table(["RNA", "DNA"])
    b = table(["DNA", "RNA"])
    assert torch.equal(a[0, 0], b[0, 1])  # identity follows the name, not the position
    unknown = table(["mystery", "other"])
    assert torch.equal(unknown[0, 0], unknown[0, 1])
    assert not torch.equal(unknown[0, 0], a[0, 0])
