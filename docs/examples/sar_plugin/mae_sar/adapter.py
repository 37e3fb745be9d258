"""Sentinel-1 GRD amplitude GeoTIFFs (bands VV, VH; 0 = no data) as decibels, two channels."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from mae_domains.data.augment import CropAndFlip, normalize_valid
from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.grid_adapter import GridAdapter
from mae_domains.models.embeddings import PatchEmbed2D

CHANNELS = ("VV", "VH")


@functools.lru_cache(maxsize=4)
def crop_and_flip(size: int) -> CropAndFlip:
    """Seeded crops and flips at ``size``; radar images have no "up", so vertical flips too."""
    return CropAndFlip(size, vflip=True)


class SarAmplitudeAdapter(GridAdapter):
    name = "sar.amplitude"
    summary = "Sentinel-1 GRD amplitude (VV, VH) GeoTIFFs, in decibels; 0 is no data."
    file_patterns = ("*.tif", "*.tiff")

    def read(self, ref: Any) -> Sample:
        """Amplitude to decibels here, not in ``transform``: normalization statistics are computed on what
        ``read`` returns, so they come out in dB (speckle is multiplicative; in dB it is additive)."""
        try:
            with rasterio.open(ref) as src:
                if src.count != len(CHANNELS):
                    raise BadSampleError(str(ref), f"expected {len(CHANNELS)} bands (VV, VH), found {src.count}")
                amplitude = src.read(out_dtype="float32")
                gsd = float(abs(src.res[0]))
        except RasterioError as err:
            raise BadSampleError(str(ref), f"not a readable GeoTIFF ({err})") from None
        valid = (np.isfinite(amplitude) & (amplitude > 0)).all(axis=0)  # 0: outside the swath
        decibels = np.zeros_like(amplitude)
        decibels[:, valid] = 20 * np.log10(amplitude[:, valid])
        meta = {"source": str(ref), "sample_id": Path(str(ref)).stem, "channel_names": list(CHANNELS), "gsd": gsd}
        return Sample(decibels, meta, valid)

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """MAE's random resized crop and flips (training; seeded, the validity mask alike) or the centre
        crop; per-channel normalization with no-data pixels set to 0 and kept out of the loss by ``valid``."""
        image, valid = crop_and_flip(self.config.model.img_size)(sample.image, sample.valid, seed, train)
        return Sample(normalize_valid(image, valid, stats), sample.meta, valid)

    def build_embedding(self, model) -> PatchEmbed2D:
        """Two channels whatever ``model.in_chans`` says; the run's config.yaml records 2."""
        return PatchEmbed2D(len(CHANNELS), self.embed_dim(model), model.patch_size)

    def synthetic_sample(self, seed: int) -> Sample:
        """Fully developed speckle (4-look gamma intensity) over a smooth backscatter field, VH about 7 dB
        below VV, with a no-data stripe outside the swath."""
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:48, 0:48] / 48.0
        sigma0_vv = 10 ** ((-12 + 4 * np.sin(4 * xx + rng.random()) * np.cos(3 * yy)) / 10)
        sigma0 = np.stack([sigma0_vv, sigma0_vv * 10 ** (-0.7)])
        intensity = sigma0 * rng.gamma(4.0, 1 / 4.0, size=sigma0.shape)
        amplitude = np.sqrt(intensity)
        valid = np.ones((48, 48), bool)
        valid[:, :4] = False
        decibels = np.where(valid, 20 * np.log10(amplitude), 0).astype(np.float32)
        meta = {"source": f"synthetic:{seed}", "sample_id": f"synthetic-{seed}", "channel_names": list(CHANNELS),
                "gsd": 10.0}
        return Sample(decibels, meta, valid)
