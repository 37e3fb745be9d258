"""ColorMAE filtered-noise mask patterns: data-independent, generated from a seed, cached on disk.

White noise filtered in the frequency domain gives spatially structured masks at no network cost:

- ``red``: low-pass (large blobs are masked together),
- ``blue``: high-pass (masked tokens are spread out evenly),
- ``green``: band-pass (mid-size blobs; best in the ColorMAE paper),
- ``purple``: band-stop (mixes large blobs and fine detail).

A bank of periodic patterns is generated once per settings (fp64 FFT, stored as float32 ``.npy``
keyed by a hash of the settings) and each sample takes a seeded random pattern, offset and flip, with
wrap-around, so any grid size works and a sample's pattern depends only on its seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

COLORS = ("red", "blue", "green", "purple")
BANK_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$MAE_DOMAINS_CACHE/masks`` or ``~/.cache/mae_domains/masks``."""
    root = os.environ.get("MAE_DOMAINS_CACHE") or Path.home() / ".cache" / "mae_domains"
    return Path(root) / "masks"


@dataclass(frozen=True)
class ColorNoiseSettings:
    """Everything the bank depends on; its hash names the cache file."""

    color: str = "green"
    size: int = 64  # pattern side in tokens (patterns are periodic: larger grids wrap around)
    count: int = 64  # patterns in the bank
    seed: int = 0
    cutoff: float = 0.08  # low-pass / high-pass corner, cycles per token
    band_center: float = 0.18  # band-pass / band-stop centre, cycles per token
    band_width: float = 0.06

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ValueError(f"unknown noise colour {self.color!r}; use one of {', '.join(COLORS)}")

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": BANK_FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def frequency_response(settings: ColorNoiseSettings) -> np.ndarray:
    """Filter gain on the ``size x size`` FFT grid (radial frequency in cycles per token)."""
    f = np.fft.fftfreq(settings.size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    low = np.exp(-0.5 * (radius / settings.cutoff) ** 2)
    band = np.exp(-0.5 * ((radius - settings.band_center) / settings.band_width) ** 2)
    gain = {"red": low, "blue": 1.0 - low, "green": band, "purple": 1.0 - band}[settings.color]
    gain[0, 0] = 0.0  # no DC: patterns have zero mean
    return gain


def generate_bank(settings: ColorNoiseSettings) -> np.ndarray:
    """``(count, size, size)`` float32 patterns, each standardized to zero mean and unit variance."""
    rng = np.random.default_rng(settings.seed)
    white = rng.standard_normal((settings.count, settings.size, settings.size))
    filtered = np.fft.ifft2(np.fft.fft2(white) * frequency_response(settings)).real
    filtered -= filtered.mean(axis=(1, 2), keepdims=True)
    filtered /= filtered.std(axis=(1, 2), keepdims=True) + 1e-12
    return filtered.astype(np.float32)


def load_or_create_bank(settings: ColorNoiseSettings, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The bank for ``settings`` from ``cache_dir`` (generated and written atomically on first use)."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"colormae_{settings.color}_{settings.key()}.npy"
    if path.exists():
        bank = np.load(path, allow_pickle=False)
        if bank.shape == (settings.count, settings.size, settings.size):
            return bank
    bank = generate_bank(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, bank, allow_pickle=False)
    os.replace(tmp, path)
    return bank


class ColorNoise:
    """Per-sample spatial noise from a filtered-noise bank; a drop-in for uniform noise in masking."""

    def __init__(self, settings: ColorNoiseSettings | None = None, cache_dir: str | os.PathLike | None = None,
                 **kwargs) -> None:
        self.settings = settings or ColorNoiseSettings(**kwargs)
        self.cache_dir = cache_dir
        self._bank: torch.Tensor | None = None

    @property
    def bank(self) -> torch.Tensor:
        if self._bank is None:
            self._bank = torch.from_numpy(load_or_create_bank(self.settings, self.cache_dir))
        return self._bank

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Noise of ``shape`` whose last two dims are spatial ``(gh, gw)``; each leading index (group,
        date, channel) gets its own pattern, offset and flips."""
        *lead, gh, gw = shape
        slices = int(np.prod(lead)) if lead else 1
        s = self.settings.size
        which = torch.randint(0, self.settings.count, (slices,), generator=generator)
        offsets = torch.randint(0, s, (slices, 2), generator=generator)
        flips = torch.randint(0, 2, (slices, 2), generator=generator)
        rows = (offsets[:, :1] + torch.arange(gh)) % s  # (slices, gh)
        cols = (offsets[:, 1:] + torch.arange(gw)) % s
        rows = torch.where(flips[:, :1].bool(), rows.flip(-1), rows)
        cols = torch.where(flips[:, 1:].bool(), cols.flip(-1), cols)
        out = self.bank[which[:, None, None], rows[:, :, None], cols[:, None, :]]
        return out.reshape(shape)
