"""Figures are readable at a glance: panel titles of at least 10 pt, an error panel instead of a second
near-identical reconstruction, and a gray image read as three channels drawn gray in every panel."""

from __future__ import annotations

import numpy as np

import mae_domains.visualize as visualize
from mae_domains.visualize import PANEL_NAMES, reconstruction_rows, save_panel_rows


def test_titles_are_at_least_10_pt(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(visualize, "save_figure", lambda fig, path: figures.append(fig) or path)
    rows = [[("input", np.zeros((8, 8))), ("masked", np.ones((8, 8, 3)) / 2)]]
    save_panel_rows(rows, tmp_path / "f.png", title="run")
    (fig,) = figures
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2 and all(t.get_fontsize() >= 10 for t in titles)
    assert fig._suptitle.get_fontsize() >= 10


def test_panels_are_input_masked_pasted_and_error():
    assert PANEL_NAMES == ("input", "masked", "reconstruction + visible", "error on masked pixels")


def test_gray_image_read_as_three_channels_is_drawn_gray():
    rng = np.random.default_rng(0)
    gray = rng.random((16, 16)).astype(np.float32)
    image = np.stack([gray] * 3)  # a gray PNG read as RGB
    recon = image + rng.normal(0, 0.05, image.shape).astype(np.float32)  # three slightly different predictions
    hidden = np.zeros((16, 16), np.float32)
    hidden[:8] = 1
    row = reconstruction_rows(image[None], recon[None], hidden[None])[0]
    assert "three equal channels drawn gray" in row[0][0]
    assert [p.ndim for _, p in row[:3]] == [2, 2, 2]  # input, masked and pasted: gray, no colour noise
    assert row[3][1].ndim == 3  # the error panel keeps its colour scale
    colour = np.stack([gray, gray[::-1], gray.T])  # a real colour image stays in colour
    assert reconstruction_rows(colour[None], colour[None], hidden[None])[0][2][1].ndim == 3
