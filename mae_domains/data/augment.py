"""Seeded augmentation of a channels-first sample with its validity mask, on albumentations.

:class:`CropAndFlip` is MAE's pretraining augmentation: a random resized crop (area ``scale``, aspect
``ratio``) and flips for training, the shorter side resized and a centre crop otherwise. The validity mask
(``False`` = nodata) goes through the same crop and flips as a mask (nearest neighbour), so nodata stays
where it was. Every draw comes from the ``seed`` of the call, so a sample's augmentation is reproducible
in any worker. :func:`normalize_valid` is the per-channel normalization with nodata set to 0 (the mean).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from mae_domains.data.sample import NormStats  # noqa: E402


@dataclass
class CropAndFlip:
    """``(C, H, W)`` image (and ``(H, W)`` validity) to ``(C, size, size)``; ``interpolation`` is an OpenCV
    flag for the image (cubic, as MAE's torchvision ``RandomResizedCrop``)."""

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True
    vflip: bool = False
    interpolation: int = cv2.INTER_CUBIC

    def __post_init__(self) -> None:
        self._pipelines: dict[bool, A.Compose] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipelines": {}}  # rebuilt in each worker

    def pipeline(self, train: bool) -> A.Compose:
        if train not in self._pipelines:
            if train:
                steps = [A.RandomResizedCrop(size=(self.size, self.size), scale=tuple(self.scale),
                                             ratio=tuple(self.ratio), interpolation=self.interpolation)]
                steps += [A.HorizontalFlip(p=0.5)] if self.hflip else []
                steps += [A.VerticalFlip(p=0.5)] if self.vflip else []
            else:
                steps = [A.SmallestMaxSize(max_size=self.size, interpolation=self.interpolation),
                         A.CenterCrop(height=self.size, width=self.size)]
            self._pipelines[train] = A.Compose(steps, seed=0)
        return self._pipelines[train]

    def __call__(self, image: np.ndarray, valid: np.ndarray | None, seed: int,
                 train: bool) -> tuple[np.ndarray, np.ndarray | None]:
        pipe = self.pipeline(train)
        pipe.set_random_seed(seed % (2**32))
        inputs = {"image": np.moveaxis(image, 0, -1)}
        if valid is not None:
            inputs["mask"] = valid.astype(np.uint8)
        out = pipe(**inputs)
        result = out["image"]
        result = result[None] if result.ndim == 2 else np.moveaxis(result, -1, 0)
        mask = None if valid is None else np.ascontiguousarray(out["mask"] > 0)
        return np.ascontiguousarray(result, dtype=np.float32), mask


def normalize_valid(image: np.ndarray, valid: np.ndarray | None, stats: NormStats | None) -> np.ndarray:
    """``(image - mean) / std`` per channel (none without ``stats``), float32, with the invalid pixels set
    to 0, the mean, so no nodata value reaches the model."""
    out = stats.normalize(image) if stats is not None else image.astype(np.float32)
    if valid is not None:
        out = np.where(valid, out, np.float32(0))
    return np.ascontiguousarray(out, dtype=np.float32)
