"""Vanilla MAE for ordinary images on the token grid ``(y, x)``: RandomResizedCrop(0.2-1) + horizontal flip,
per-patch pixel target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from mae_domains.grid_adapter import GridAdapter  # noqa: E402
from mae_domains.data.sample import NormStats, Sample  # noqa: E402
from mae_domains.models.embeddings import PatchEmbed2D  # noqa: E402
from mae_image.reader import IMAGE_SUFFIXES, read_image  # noqa: E402


class ImageAdapter(GridAdapter):
    name = "image"
    summary = "Folders of PNG/JPEG/TIFF images (gray or RGB, 8/16-bit): vanilla MAE."
    value_range = "0-1: 8- or 16-bit pixels divided by their maximum (colour to gray by luma for one channel)"
    file_patterns = tuple(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + tuple(f"*{s.upper()}" for s in sorted(IMAGE_SUFFIXES))
    option_defaults: dict[str, Any] = {"crop_scale": [0.2, 1.0], "hflip": True}
    option_help = {"crop_scale": "area range of the RandomResizedCrop, as fractions of the image (MAE: 0.2 to 1)",
                   "hflip": "random horizontal flips in training"}

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self._pipelines: dict[bool, A.Compose] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pipelines"] = {}  # rebuilt in each worker
        return state

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

    def pipeline(self, train: bool) -> A.Compose:
        if train not in self._pipelines:
            if train:
                steps = [A.RandomResizedCrop(size=(self.size, self.size), scale=tuple(self.options["crop_scale"]),
                                             interpolation=cv2.INTER_CUBIC)]
                if self.options["hflip"]:
                    steps.append(A.HorizontalFlip(p=0.5))
            else:
                steps = [A.SmallestMaxSize(max_size=self.size, interpolation=cv2.INTER_CUBIC),
                         A.CenterCrop(height=self.size, width=self.size)]
            self._pipelines[train] = A.Compose(steps, seed=0)
        return self._pipelines[train]

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        pipe = self.pipeline(train)
        pipe.set_random_seed(seed % (2**32))
        hwc = np.moveaxis(sample.image, 0, -1)
        out = np.moveaxis(pipe(image=hwc)["image"], -1, 0).astype(np.float32)
        if out.ndim == 2:
            out = out[None]
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
