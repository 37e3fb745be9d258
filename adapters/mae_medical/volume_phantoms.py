"""Generated CT-like volumes with a known structure (for the synthetic sample, tests and benchmarks)."""

from __future__ import annotations

import numpy as np


def abdomen_phantom(seed: int, shape: tuple[int, int, int] = (40, 48, 48),
                    organs: int = 1, textured: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(hu, label)`` of shape ``(Z, Y, X)``: air (-1000 HU) around an elliptic body of soft tissue (40 HU)
    with a fat rim (-100 HU), a bone rod (700 HU) and ``organs`` brighter spheres (label k, 120 + 30k HU)
    at seeded positions and radii; mild noise. ``textured`` organs have the soft tissue's mean (40 HU) and
    differ only by a voxel checkerboard of +-120 HU (found by texture, not by intensity). ``label`` is uint8."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = (y / 0.85) ** 2 + (x / 0.9) ** 2 <= 1.0
    hu = np.full(shape, -1000.0, np.float32)
    hu[body] = -100.0
    hu[(y / 0.75) ** 2 + (x / 0.8) ** 2 <= 1.0] = 40.0
    hu[((y - 0.55) / 0.12) ** 2 + (x / 0.12) ** 2 <= 1.0] = 700.0
    label = np.zeros(shape, np.uint8)
    for k in range(1, organs + 1):
        centre = rng.uniform(-0.35, 0.35, 3) * np.array([1.0, 0.6, 1.0])
        radius = rng.uniform(0.25, 0.4)
        inside = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= radius ** 2
        inside &= body & (hu < 500)
        if textured:
            checker = ((np.indices(shape).sum(axis=0) % 2) * 2 - 1).astype(np.float32)
            hu[inside] = 40.0 + 120.0 * checker[inside]
        else:
            hu[inside] = 120.0 + 30.0 * k
        label[inside] = k
    hu += rng.normal(0.0, 15.0, shape).astype(np.float32) * body
    return hu.astype(np.float32), label
