"""Date-code presets of the temporal adapter against the reference tables, recomputed here in numpy:
SatMAE (``models_mae_temporal.py``, ``util/pos_embed.py``, ``util/datasets.py``) and Prithvi-EO-2.0
(``prithvi_mae.py``: ``get_3d_sincos_pos_embed`` + ``TemporalEncoder``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_domains.config import ModelConfig
from mae_domains.grid import GridBatch
from tests.remote_sensing.conftest import make_adapter

DATES = [["2016-03-05T14:20:00", "2017-11-30", "2019-07-04 09:05"]]


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """``get_1d_sincos_pos_embed_from_grid``: ``[sin(pos w), cos(pos w)]``, ``w = 1 / 10000^(i / (D/2))``."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def satmae_2d(dim: int, size: int) -> np.ndarray:
    """``get_2d_sincos_pos_embed`` without CLS: meshgrid(w, h), the first half codes the column (w)."""
    grid = np.stack(np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)), axis=0)
    return np.concatenate([sincos_1d(dim // 2, grid[0]), sincos_1d(dim // 2, grid[1])], axis=1)


def satmae_table(width: int, date_width: int, dates: np.ndarray, size: int) -> np.ndarray:
    """``forward_encoder`` / ``forward_decoder``: pos (width - date_width) ++ [year, month, hour codes] per frame."""
    part = date_width // 3
    ts = np.concatenate([sincos_1d(part, dates[:, k]) for k in range(3)], axis=1)  # (T, date_width)
    pos = satmae_2d(width - date_width, size)
    return np.concatenate([np.concatenate([pos, np.repeat(ts[t:t + 1], size * size, 0)], 1)
                           for t in range(len(dates))], axis=0)


def prithvi_table(width: int, dates: np.ndarray, size: int) -> np.ndarray:
    """``get_3d_sincos_pos_embed`` (w, h, t in 6/16, 6/16, 4/16) + ``TemporalEncoder`` (year in D//2, day rest)."""
    t_size = len(dates)
    w_dim = h_dim = width // 16 * 6
    t_dim = width // 16 * 4
    w = np.tile(sincos_1d(w_dim, np.arange(size)), (t_size * size, 1))
    h = np.tile(np.repeat(sincos_1d(h_dim, np.arange(size)), size, axis=0), (t_size, 1))
    t = np.repeat(sincos_1d(t_dim, np.arange(t_size)), size * size, axis=0)
    position = np.concatenate([w, h, t], axis=1)
    year_dim = width // 2
    temporal = np.concatenate([sincos_1d(year_dim, dates[:, 0]), sincos_1d(width - year_dim, dates[:, 1])], 1)
    return position + np.repeat(temporal, size * size, axis=0)


def codes(adapter, preset: str, width: int, size: int = 4):
    embedding = adapter.build_embedding(ModelConfig(preset=preset, patch_size=8))
    meta = adapter.batch_meta({"meta": [{"dates": DATES[0]}]}, torch.device("cpu"))
    batch = GridBatch(torch.zeros(1, 3, 6, 8 * size, 8 * size), meta=meta)
    return embedding.codes(batch, embedding.layout(batch), width)[0].double().numpy(), meta["dates"][0].numpy()


def test_satmae_date_inputs_are_year_from_2002_month_from_0_and_hour():
    adapter = make_adapter("temporal", date_preset="satmae")
    _, dates = codes(adapter, "micro", 64)
    assert dates.tolist() == [[14.0, 2.0, 14.0], [15.0, 10.0, 0.0], [17.0, 6.0, 9.0]]


@pytest.mark.parametrize("preset, width, date_width", [
    ("large", 1024, 384), ("large", 512, 192),  # models_mae_temporal.py: embed_dim - 384, decoder_embed_dim - 192
    ("base", 768, 384), ("base", 512, 192),  # mae_vit_base_patch16: the same absolute split (half of 768)
    ("huge", 1280, 384), ("huge", 512, 192),
])
def test_satmae_preset_reproduces_its_tables(preset, width, date_width):
    """SatMAE's date code is 384 encoder and 192 decoder dims at every model width."""
    adapter = make_adapter("temporal", date_preset="satmae")
    table, dates = codes(adapter, preset, width)
    np.testing.assert_allclose(table, satmae_table(width, date_width, dates, 4), atol=2e-6)


@pytest.mark.parametrize("preset, width, date_width", [("small", 384, 144), ("small", 256, 96)])
def test_satmae_preset_at_widths_too_narrow_for_384_takes_three_eighths(preset, width, date_width):
    adapter = make_adapter("temporal", date_preset="satmae")
    table, dates = codes(adapter, preset, width)
    np.testing.assert_allclose(table, satmae_table(width, date_width, dates, 4), atol=2e-6)


@pytest.mark.parametrize("preset, width, date_width", [("base", 768, 288), ("huge", 1280, 480), ("base", 512, 192)])
def test_satmae_preset_honours_an_explicit_date_fraction(preset, width, date_width):
    adapter = make_adapter("temporal", date_preset="satmae", date_fraction=0.375)
    table, dates = codes(adapter, preset, width)
    np.testing.assert_allclose(table, satmae_table(width, date_width, dates, 4), atol=2e-6)


def test_date_fraction_is_refused_where_it_cannot_apply():
    with pytest.raises(ValueError, match="date_fraction=0.5 does not apply to date_preset=prithvi"):
        make_adapter("temporal", date_preset="prithvi", date_fraction=0.5)
    with pytest.raises(ValueError, match="date_fraction must be a number between 0 and 1.*got 1.5"):
        make_adapter("temporal", date_fraction=1.5)


@pytest.mark.parametrize("width", [1024, 512])
def test_prithvi_preset_reproduces_its_tables(width):
    adapter = make_adapter("temporal", date_preset="prithvi")
    table, dates = codes(adapter, "large", width)
    assert dates.tolist() == [[2016.0, 65.0], [2017.0, 334.0], [2019.0, 185.0]]  # (year, day of year)
    np.testing.assert_allclose(table, prithvi_table(width, dates, 4), atol=2e-6)


def test_default_is_year_and_day_of_year_in_a_quarter_of_the_width():
    adapter = make_adapter("temporal")
    table, dates = codes(adapter, "large", 1024)
    date_code = np.concatenate([sincos_1d(128, dates[:, 0]), sincos_1d(128, dates[:, 1])], axis=1)
    np.testing.assert_allclose(table[::16, 768:], date_code, atol=2e-6)  # first token of each frame
    np.testing.assert_allclose(table[:16, :768], satmae_2d(768, 4), atol=2e-6)


def test_an_unknown_preset_is_a_one_line_error():
    with pytest.raises(ValueError, match="date_preset must be null .* 'satmae' or 'prithvi', got 'satma'"):
        make_adapter("temporal", date_preset="satma")
