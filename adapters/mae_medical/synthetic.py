"""Small synthetic images for tests, the conformance kit and benchmarks: a chest radiograph and an
ultrasound sector with burned-in annotations outside it. Values in [0, 1] as displayed (air dark)."""

from __future__ import annotations

import numpy as np


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def chest_xray(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    """A frontal chest radiograph caricature ``(H, W)`` float32: bright body, dark lungs, ribs, spine,
    heart and a soft vignette; position and size jitter with ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    image = np.full((h, w), 0.05)
    body = _ellipse(h, w, h * (0.55 + 0.03 * rng.standard_normal()), w / 2, h * 0.5, w * (0.45 + 0.03 * rng.random()))
    image[body] = 0.65
    for side in (-1, 1):
        lung = _ellipse(h, w, h * 0.5, w / 2 + side * w * (0.2 + 0.02 * rng.random()), h * 0.3, w * 0.14)
        image[lung] = 0.25
    yy, xx = np.mgrid[0:h, 0:w]
    ribs = (np.sin((yy + 3 * np.abs(xx - w / 2) / 4) / h * 2 * np.pi * (6 + rng.integers(0, 2))) > 0.85) & body
    image[ribs] += 0.15
    image[(np.abs(xx - w / 2) < w * 0.05) & body] = 0.85  # spine
    image[_ellipse(h, w, h * 0.62, w * 0.55, h * 0.14, w * 0.12)] = 0.7  # heart
    image += 0.02 * rng.standard_normal((h, w))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def sector_mask(height: int, width: int, apex: tuple[float, float] | None = None, radius: float | None = None,
                half_angle_deg: float = 35.0) -> np.ndarray:
    """A convex ultrasound sector (apex at the top centre by default) as a bool mask."""
    h, w = height, width
    ay, ax = apex if apex is not None else (h * 0.1, w / 2)
    r = radius if radius is not None else h * 0.85
    yy, xx = np.mgrid[0:h, 0:w]
    dy, dx = yy - ay, xx - ax
    angle = np.degrees(np.arctan2(dx, np.maximum(dy, 1e-9)))
    return (np.hypot(dy, dx) <= r) & (dy >= 0) & (np.abs(angle) <= half_angle_deg)


def ultrasound_frame(seed: int, height: int = 64, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """``(image, sector)``: speckled tissue with a dark cyst inside a sector, black outside, plus bright
    burned-in text blocks and a grey-scale bar in the corners (outside the sector)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    sector = sector_mask(h, w)
    speckle = rng.rayleigh(0.25, (h, w))
    depth = np.linspace(1.0, 0.6, h)[:, None]
    tissue = np.clip(0.25 + speckle * depth, 0.08, 1.0)
    cy, cx = h * (0.5 + 0.1 * rng.random()), w * (0.45 + 0.1 * rng.random())
    tissue[_ellipse(h, w, cy, cx, h * 0.09, w * 0.07)] *= 0.25
    image = np.where(sector, tissue, 0.0)
    image[1:4, 1:max(3, w // 5)] = 0.95  # "text" top left
    image[h - 5:h - 2, w - max(4, w // 4):w - 1] = 0.9  # "text" bottom right
    image[h // 4:h // 4 + h // 3, w - 3:w - 1] = np.linspace(1.0, 0.1, h // 3)[:, None]  # grey bar
    return image.astype(np.float32), sector
