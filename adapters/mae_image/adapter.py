"""Vanilla MAE for ordinary images on the token grid ``(y, x)``: RandomResizedCrop(0.2-1) + horizontal flip,
per-patch pixel target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mae_domains.data.augment import CropAndFlip
from mae_domains.data.sample import NormStats, Sample
from mae_domains.grid_adapter import GridAdapter
from mae_domains.models.embeddings import PatchEmbed2D
from mae_image.reader import IMAGE_SUFFIXES, read_image


class ImageAdapter(GridAdapter):
    name = "image"
    summary = "Folders of PNG/JPEG/TIFF images (gray or RGB, 8/16-bit): vanilla MAE."
    value_range = "0-1: 8- or 16-bit pixels divided by their maximum (colour to gray by luma for one channel)"
    file_patterns = tuple(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + tuple(f"*{s.upper()}" for s in sorted(IMAGE_SUFFIXES))
    option_defaults: dict[str, Any] = {"crop_scale": [0.2, 1.0], "hflip": True}
    resizes_whole_image = True
    option_help = {"crop_scale": "area range of the RandomResizedCrop, as fractions of the image (MAE: 0.2 to 1)",
                   "hflip": "random horizontal flips in training"}

    def describe_input(self) -> dict[str, Any]:
        """Input-contract entries of an export: the channel names of gray and RGB inputs."""
        names = {1: ["gray"], 3: ["red", "green", "blue"]}.get(self.channels)
        return {"channels": names} if names else {}

    @property
    def channels(self) -> int:
        return int(self.config.model.in_chans)

    @property
    def size(self) -> int:
        return int(self.config.model.img_size)

    def read(self, ref: Any) -> Sample:
        image = read_image(ref, self.channels, self.config.data.max_pixels)
        path = Path(str(ref))
        return Sample(image, {"source": str(path), "sample_id": path.stem}, label=None)

    @property
    def augment(self) -> CropAndFlip:
        """MAE's RandomResizedCrop (cubic) and horizontal flip at the bound ``model.img_size``."""
        wanted = CropAndFlip(self.size, tuple(self.options["crop_scale"]), hflip=bool(self.options["hflip"]))
        if self.__dict__.get("_augment") != wanted:  # kept, with its built pipelines, while the settings hold
            self._augment = wanted
        return self._augment

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        out, _ = self.augment(sample.image, None, seed, train)
        meta = sample.meta
        if out.shape[0] == 3:  # a colour photograph (or H&E, IHC): figures show it as recorded, never stretched
            black, white = np.zeros((3, 1, 1), np.float32), np.ones((3, 1, 1), np.float32)
            if stats is not None:
                black, white = stats.normalize(black), stats.normalize(white)
            meta = {**meta, "display_range": np.stack([black.ravel(), white.ravel()], axis=1).tolist()}
        if stats is not None:
            out = stats.normalize(out)
        return Sample(out, meta, None, sample.label)

    def build_embedding(self, model) -> PatchEmbed2D:
        """MAE's 2D patch embedding with the fixed sin-cos position code (timm-compatible keys on export)."""
        return PatchEmbed2D(int(model.in_chans), self.embed_dim(model), int(model.patch_size))

    def synthetic_sample(self, seed: int) -> Sample:
        """Smooth random shapes on a gradient background, in [0, 1]."""
        rng = np.random.default_rng(seed)
        h, w = 48 + int(rng.integers(0, 32)), 48 + int(rng.integers(0, 32))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        image = np.stack([0.3 + 0.4 * (a * yy + (1 - a) * xx) for a in rng.random(self.channels)])
        for _ in range(3):
            cy, cx, r = rng.random() * h, rng.random() * w, 4 + rng.random() * 12
            disk = (np.mgrid[0:h, 0:w][0] - cy) ** 2 + (np.mgrid[0:h, 0:w][1] - cx) ** 2 < r**2
            image[:, disk] = rng.random((self.channels, 1))
        image += 0.02 * rng.standard_normal(image.shape)
        return Sample(np.clip(image, 0, 1).astype(np.float32), {"source": f"synthetic:{seed}", "sample_id": f"synthetic-{seed}"})
