"""Crops, foreground-aware windows, normalization and channel naming, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from mae_domains.data.sample import BadSampleError, NormStats
from mae_microscopy.channels import ChannelResolver
from mae_microscopy.crops import (
    Foreground, crops_for_area, grid_windows, normalize_crop, otsu_threshold, project_planes, seeded_flips,
)
from mae_microscopy.sorted_percentiles import sorted_percentiles
from mae_microscopy.synthetic import synthetic_field
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import write_ome_tiff


def test_grid_windows_cover_the_field_and_end_at_the_border():
    windows = grid_windows(100, 70, 32)
    assert [w.row for w in windows[::3]] == [0, 32, 64, 68]
    assert [w.col for w in windows[:3]] == [0, 32, 38]
    assert grid_windows(20, 20, 32)[0].as_tuple() == (-6, -6, 32, 32)  # centred, padded
    assert len(grid_windows(64, 64, 32, stride=16)) == 9 and crops_for_area(100, 70, 32) == 7


def test_otsu_splits_two_populations():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(100, 5, 5000), rng.normal(1000, 50, 1000)])
    assert 150 < otsu_threshold(values) < 800


def test_percentile_and_instance_normalization_match_numpy():
    rng = np.random.default_rng(1)
    image = rng.gamma(2.0, 300.0, (3, 16, 16)).astype(np.float32)
    valid = np.ones((16, 16), bool)
    valid[:, :4] = False  # padding does not count and ends up 0
    out = normalize_crop(image, valid, "percentile", ["a", "b", "c"], (1, 99))
    for c in range(3):
        lo, hi = np.percentile(image[c][valid], [1, 99])
        np.testing.assert_allclose(out[c][valid], (image[c][valid] - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    assert not out[:, ~valid].any()
    inst = normalize_crop(image, valid, "instance", ["a", "b", "c"])
    np.testing.assert_allclose(inst[:, valid].mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(inst[:, valid].std(axis=1), 1.0, rtol=1e-4)
    stats = NormStats([10.0, 20.0], [2.0, 4.0], 1, ["b", "a"])  # looked up by name, not position
    arch = normalize_crop(image, np.ones((16, 16), bool), "archive", ["a", "b", "c"], stats=stats)
    np.testing.assert_allclose(arch[0], (image[0] - 20.0) / 4.0, rtol=1e-5)
    np.testing.assert_allclose(arch[1], (image[1] - 10.0) / 2.0, rtol=1e-5)
    np.testing.assert_array_equal(normalize_crop(image, np.ones((16, 16), bool), "none", "abc"), image)


def numpy_normalization(image, valid, mode, percentiles=(1.0, 99.0)):
    """Per-channel normalization with ``np.percentile`` and ``np.where``: the formulation the fast one replaced."""
    image = image.astype(np.float32, copy=True)
    mask = np.broadcast_to(valid, image.shape[1:])
    for c in range(image.shape[0]):
        values = image[c][mask]
        if values.size == 0:
            continue
        if mode == "instance":
            image[c] = (image[c] - values.mean()) / max(float(values.std()), 1e-6)
        else:
            low, high = np.percentile(values, [float(percentiles[0]), float(percentiles[1])])
            image[c] = (image[c] - low) / max(float(high - low), 1e-6) if high > low else 0.0
    return np.where(mask[None], image, 0.0).astype(np.float32)


@pytest.mark.parametrize("values", ["uint16 counts", "fractional", "three levels", "float64"])
@pytest.mark.parametrize("count", [1, 2, 5, 1000, 65536])
def test_sorted_percentiles_equal_numpy_bit_for_bit(values, count):
    rng = np.random.default_rng(count)
    data = {"uint16 counts": lambda: rng.gamma(2.0, 300.0, count).round().astype(np.float32),
            "fractional": lambda: rng.normal(0.0, 1.0, count).astype(np.float32),
            "three levels": lambda: rng.integers(0, 3, count).astype(np.float32),
            "float64": lambda: rng.normal(5.0, 2.0, count)}[values]()
    for percentiles in ([1.0, 99.0], [0.0, 100.0], [0.5, 99.5], [2.0, 98.0], [33.3, 66.7], [0.1, 50.0]):
        expected = np.percentile(data, percentiles)
        got = sorted_percentiles(data, percentiles)
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), (percentiles, got, expected)


@pytest.mark.parametrize("mode", ["percentile", "instance"])
@pytest.mark.parametrize("padded", [False, True])
def test_normalization_is_bitwise_that_of_numpy(mode, padded):
    """The sorted percentiles and the all-valid shortcut change no bit of a 16-bit crop (as the shards
    store it) or of a padded, flipped (non-contiguous) one."""
    image = synthetic_field(3, ["DNA", "RNA", "ER", "AGP", "Mito"], 64, 64, cells=4).astype(np.float32)
    valid = np.ones((64, 64), bool)
    if padded:
        valid[:, 50:] = False
        image = np.rot90(image, 1, axes=(-2, -1))
        valid = np.rot90(valid, 1)
    got = normalize_crop(image, valid, mode, list("abcde"))
    expected = numpy_normalization(image, valid, mode)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.tobytes() == expected.tobytes()


def test_planes_and_flips():
    block = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    np.testing.assert_array_equal(project_planes(block, "max"), block[:, 2])
    np.testing.assert_array_equal(project_planes(block[:, 1:2], "slices"), block[:, 1])
    image, valid = seeded_flips(block[:, 0], np.ones((4, 4), bool), np.random.default_rng(3))
    again, _ = seeded_flips(block[:, 0], np.ones((4, 4), bool), np.random.default_rng(3))
    np.testing.assert_array_equal(image, again)
    assert sorted(image.ravel().tolist()) == sorted(block[:, 0].ravel().tolist())


def test_foreground_aware_crops_land_on_cells(tmp_path):
    names = ["DNA", "ER"]
    field = synthetic_field(0, names, 256, 256, cells=6, region=(0.0, 0.0, 0.3, 0.3))  # cells top-left only
    write_ome_tiff(tmp_path / "sparse.ome.tif", field, names)
    fg = Foreground.from_overview(field.astype(np.float32))
    aware = make_adapter(32, crops_per_image=12, min_foreground=0.2, window_attempts=16)
    blind = make_adapter(32, crops_per_image=12, foreground=False)
    share = {}
    for label, adapter in (("aware", aware), ("blind", blind)):
        refs = adapter.discover([tmp_path / "sparse.ome.tif"])
        crops = [adapter.read_training(r, 100 + i) for i, r in enumerate(refs)]
        share[label] = np.mean([fg.fraction(c.image) for c in crops])
        assert all(c.meta["window"][2:] == [32, 32] for c in crops)
    assert share["aware"] > 0.15 and share["aware"] > 3 * share["blind"]


def test_channel_resolver_names_aliases_selection():
    r = ChannelResolver(select=["Mito", "DNA"], aliases={"Hoechst 33342": "DNA"})
    plan = r.plan("f", ["hoechst 33342", "ER", "Mito"])
    assert plan.indices == (2, 0) and plan.names == ("Mito", "DNA")
    unnamed = ChannelResolver(names=["DNA", "ER"])
    assert unnamed.plan("f", ["channel_0", "channel_1"]).names == ("DNA", "ER")
    with pytest.raises(BadSampleError, match="names its channels differently"):
        unnamed.plan("f", ["DNA", "RNA"])
    with pytest.raises(BadSampleError, match=r"lacks channel\(s\) \['Mito'\]"):
        ChannelResolver(select=["Mito"]).plan("f", ["DNA", "ER"])
    with pytest.raises(BadSampleError, match="occur twice"):
        ChannelResolver().plan("f", ["DNA", "DNA"])
    with pytest.raises(ValueError, match="unknown_channels"):
        ChannelResolver(unknown="ignore")


@pytest.mark.parametrize("option, value, message", [
    ("z_mode", "mean", "data.options.z_mode must be one of max, slices, volume"),
    ("normalize", "zscore", "data.options.normalize"),
    ("crops_per_image", 0, "data.options.crops_per_image"),
    ("fourier_weight", 1.0, "data.options.fourier_weight"),
    ("percentiles", [99, 1], "data.options.percentiles"),
    ("channel_pattern", "r(?P<row>\\d+)", "needs a named group"),
    ("unknown_channels", "drop", "data.options.unknown_channels"),
    ("channelz", ["DNA"], "did you mean 'channels'"),
])
def test_config_mistakes_name_the_option(option, value, message):
    with pytest.raises(ValueError, match=message) as err:
        make_adapter(32, **{option: value})
    assert "\n" not in str(err.value)
