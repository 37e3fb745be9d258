"""ColorMAE filtered-noise banks: generated from a seed, cached on disk, spectra as named."""

import numpy as np
import pytest
import torch

from mae_domains.masking import COLORS, ColorNoise, ColorNoiseSettings, generate_bank, load_or_create_bank


def energy_share(bank: np.ndarray, low: float, high: float) -> float:
    """Share of spectral energy at radial frequencies in [low, high) cycles per token."""
    power = np.abs(np.fft.fft2(bank)) ** 2
    f = np.fft.fftfreq(bank.shape[-1])
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    return float(power[..., (radius >= low) & (radius < high)].sum() / power.sum())


def test_bank_is_deterministic_and_cached(tmp_path):
    settings = ColorNoiseSettings(color="green", size=32, count=4, seed=3)
    bank = load_or_create_bank(settings, tmp_path)
    files = list(tmp_path.glob("colormae_green_*.npy"))
    assert len(files) == 1 and settings.key() in files[0].name
    assert np.array_equal(np.load(files[0], allow_pickle=False), bank)
    assert np.array_equal(load_or_create_bank(settings, tmp_path), generate_bank(settings))
    other = ColorNoiseSettings(color="green", size=32, count=4, seed=4)
    assert other.key() != settings.key()
    assert bank.shape == (4, 32, 32) and bank.dtype == np.float32
    assert abs(bank.mean()) < 1e-5 and np.allclose(bank.std(axis=(1, 2)), 1, atol=1e-4)


def test_colors_have_their_spectra():
    banks = {c: generate_bank(ColorNoiseSettings(color=c, size=32, count=4)) for c in COLORS}
    low = {c: energy_share(b, 0.0, 0.1) for c, b in banks.items()}
    band = {c: energy_share(b, 0.12, 0.24) for c, b in banks.items()}
    assert low["red"] > 0.8 and low["blue"] < 0.1  # low-pass vs high-pass
    assert band["green"] > 0.6 and band["purple"] < 0.2  # band-pass vs band-stop
    assert band["green"] == max(band.values()) and band["purple"] == min(band.values())


def test_unknown_color_is_an_error():
    with pytest.raises(ValueError, match="colour"):
        ColorNoiseSettings(color="pink")


def test_draw_is_seeded_and_wraps_any_grid(tmp_path):
    noise = ColorNoise(cache_dir=tmp_path, color="red", size=16, count=4)
    a = noise.draw((3, 20, 7), torch.Generator().manual_seed(1))
    b = noise.draw((3, 20, 7), torch.Generator().manual_seed(1))
    assert a.shape == (3, 20, 7) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # each slice has its own pattern / offset


def test_red_masks_are_clumpier_than_blue(tmp_path):
    """Masked neighbours agree more often with low-pass noise than with high-pass noise."""
    from mae_domains.grid import GridLayout, spatial_axis
    from mae_domains.masking import build_masker

    layout = GridLayout((spatial_axis("y", 14), spatial_axis("x", 14)))
    agree = {}
    for color in ("red", "blue"):
        m = build_masker("random", color=color, cache_dir=tmp_path)(layout, 0.75, 8, seeds=list(range(8)))
        grid = m.mask.reshape(8, 14, 14)
        agree[color] = (grid[:, :, 1:] == grid[:, :, :-1]).float().mean().item()
    assert agree["red"] > agree["blue"]
