"""Reconstruction figures can be read: one stretch per sample shared by its panels, composites labelled by
what they show, each band group's mask drawn, RGB photographs and H&E shown as recorded. Checked on the
pixel arrays that go into the panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mae_domains.visualize as visualize
from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.data.sample import NormStats
from mae_domains.registry import get_adapter
from mae_domains.testing.conformance import Context
from mae_domains.visualize import HIDDEN_GRAY, reconstruction_rows
from mae_remote_sensing.bands import DEFAULT_BANDS
from mae_remote_sensing.rendering import reconstruction_rows as chip_rows
from mae_remote_sensing.visualize import chip_limits, composite_indices, composite_label, false_colour_indices


def test_panels_of_a_sample_share_one_stretch():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (1, 16, 16)).astype(np.float32)
    recon = image * 0.25  # a dull reconstruction must look dull, not be stretched back to full contrast
    hidden = np.zeros((1, 16, 16), np.float32)
    hidden[:, :8] = 1
    row = reconstruction_rows(image[None], recon[None], hidden)[0]
    titles = [t for t, _ in row]
    assert titles[1:] == ["masked", "reconstruction + visible", "error on masked pixels"] and "stretch shared" in titles[0]
    shown_input, masked, pasted, error = (p for _, p in row)
    assert pasted[:8].std() < 0.5 * shown_input[:8].std()
    assert np.array_equal(pasted[8:], shown_input[8:])  # visible pixels look the same in input and pasted
    assert np.all(masked[:8] == HIDDEN_GRAY) and np.array_equal(masked[8:], shown_input[8:])
    # the error panel: black where nothing was hidden, bright where the dull reconstruction misses
    assert error.shape == (16, 16, 3) and np.allclose(error[8:], error[8, 0]) and error[:8].mean() > error[8:].mean()


def test_rgb_photograph_is_shown_as_recorded(tmp_path, monkeypatch):
    """An 8-bit H&E-like RGB image goes through the image adapter (normalized with its statistics) and the
    default reconstruction figure shows its input pixels as recorded: value / 255, no per-channel stretch."""
    rng = np.random.default_rng(1)
    pixels = np.clip(np.array([200, 110, 170]) + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "he.png")
    ctx = Context(get_adapter("image"))
    stats = NormStats([0.7, 0.45, 0.65], [0.05, 0.05, 0.05], 1)
    dataset = ArchiveDataset(ctx.adapter, [tmp_path / "he.png"], stats, train=False)
    batch = collate_items([dataset[0]])
    model = ctx.model().eval()
    with torch.no_grad():
        output = model(**ctx.adapter.model_inputs(batch, torch.device("cpu")))
    captured = {}
    monkeypatch.setattr(visualize, "save_panel_rows", lambda rows, path, title="", size=2.6: captured.setdefault("rows", rows))
    ctx.adapter.render_reconstruction(model, batch, output, tmp_path / "r.png")
    title, shown = captured["rows"][0][0]
    assert "as recorded" in title
    np.testing.assert_allclose(shown, pixels / 255.0, atol=1e-5)


def test_composites_are_labelled_by_what_they_show():
    bands = list(DEFAULT_BANDS)
    true = composite_indices(bands)
    assert [bands[i] for i in true] == ["B4", "B3", "B2"]
    assert composite_label(bands, true) == "true colour (B4, B3, B2)"
    assert composite_label(bands, false_colour_indices(bands)) == "false colour (B8, B4, B3)"
    visible = [bands.index(b) for b in ("B2", "B3", "B4")]
    assert "false colour" not in composite_label(bands, visible)
    # a chip of blue, green, red in file order is still shown (and called) true colour
    assert composite_label(["B2", "B3", "B4"], composite_indices(["B2", "B3", "B4"])) == "true colour (B4, B3, B2)"
    assert composite_label(["B5", "B6", "B7"], composite_indices(["B5", "B6", "B7"])) == "false colour (B5, B6, B7)"
    assert composite_label(["x", "y", "z"], [0, 1, 2]).startswith("composite (x, y, z")
    # wavelengths from the sample (another sensor's band names) decide too
    assert composite_label(["SR_B4", "SR_B3", "SR_B2"], [0, 1, 2], [655.0, 561.0, 482.0]) == "true colour (SR_B4, SR_B3, SR_B2)"


@pytest.fixture(scope="module")
def band_group_figure():
    ctx = Context(get_adapter("remote_sensing.multispectral"))  # independent masking across groups
    model = ctx.model().eval()
    batch = ctx.batch()
    with torch.no_grad():
        output = ctx.forward(model, batch)
        rows = chip_rows(ctx.adapter, model, batch, output, frames=False)
        _, hidden = model.reconstruct_pixels(ctx.adapter.grid_batch(batch, torch.device("cpu")), output)
    return ctx.adapter, batch, rows, hidden.numpy()


def test_each_band_group_mask_is_drawn(band_group_figure):
    adapter, _, rows, hidden = band_group_figure
    titles = [t for t, _ in rows[0]]
    masked = [(t, p) for t, p in rows[0] if t.startswith("masked: ")]
    assert [t for t, _ in masked] == [f"masked: {name}" for name in adapter.group_names]
    bands = list(adapter.bands)
    maps = []
    for (title, picture), group in zip(masked, adapter.groups):
        group_hidden = hidden[0][[bands.index(b) for b in group]].any(axis=0)
        assert np.all(picture[group_hidden] == HIDDEN_GRAY), title
        maps.append(group_hidden)
    assert len({m.tobytes() for m in maps}) > 1  # independent masking: the groups' masks differ
    assert titles[0] == "#0 input: true colour (B4, B3, B2)" and titles[1] == "#0 input: false colour (B8, B4, B3)"


def test_chip_panels_share_the_input_stretch(band_group_figure):
    adapter, batch, rows, hidden = band_group_figure
    panels = dict(rows[0])
    shown_input = panels["#0 input: true colour (B4, B3, B2)"]
    pasted = panels["recon. + visible: true colour (B4, B3, B2)"]
    true = [list(adapter.bands).index(b) for b in ("B4", "B3", "B2")]
    visible = ~hidden[0][true].any(axis=0)
    assert visible.any() and np.array_equal(pasted[visible], shown_input[visible])
    # the stretch is the input's: the input panel spans it (2-98 % of valid pixels)
    image = batch["image"][0].numpy()
    limits = chip_limits(image, batch["valid"][0].numpy())
    expected = np.clip((image[true[0]] - limits[true[0], 0]) / (limits[true[0], 1] - limits[true[0], 0]), 0, 1)
    np.testing.assert_allclose(shown_input[..., 0], expected, atol=1e-6)


def test_frames_of_a_time_series_share_their_chip_stretch():
    frames = np.stack([np.full((6, 8, 8), 1.0), np.full((6, 8, 8), 2.0)]).astype(np.float32)
    frames[:, :, :4] -= 1.0
    limits = chip_limits(frames)
    assert limits.shape == (6, 2) and np.allclose(limits[:, 0], 0.0) and np.allclose(limits[:, 1], 2.0)
