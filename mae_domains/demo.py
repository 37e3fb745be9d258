"""The built-in demo: a sample archive cut from real images that installed packages ship (no
download), and a short CPU pretraining run on it."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

CROPS_PER_SOURCE = 48
CROP = 96


def _shipped_images() -> dict[str, np.ndarray]:
    """Photographs (scikit-learn, matplotlib), a brain MRI slice and a digital elevation model
    (matplotlib sample data), as uint8 RGB or uint16 gray arrays."""
    import matplotlib.cbook as cbook
    from sklearn.datasets import load_sample_images

    images: dict[str, np.ndarray] = {}
    photos = load_sample_images()
    for name, image in zip(("china", "flower"), photos.images):
        images[f"photo_{name}"] = np.asarray(image, dtype=np.uint8)
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        images["photo_hopper"] = np.asarray(Image.open(fh).convert("RGB"), dtype=np.uint8)
    with cbook.get_sample_data("s1045.ima.gz") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    mri = np.frombuffer(raw, dtype=">u2").reshape(256, 256).astype(np.float64)
    images["mri_brain"] = (mri / max(mri.max(), 1) * 65535).astype(np.uint16)
    dem = np.load(cbook.get_sample_data("jacksboro_fault_dem.npz", asfileobj=False))["elevation"].astype(np.float64)
    images["dem_jacksboro"] = ((dem - dem.min()) / max(np.ptp(dem), 1) * 65535).astype(np.uint16)
    return images


def build_sample_archive(folder: str | Path, crops_per_source: int = CROPS_PER_SOURCE, crop: int = CROP, seed: int = 0) -> Path:
    """Write random crops (8-bit RGB PNG for photos, 16-bit gray PNG for MRI/DEM) into ``folder``,
    one sub-folder per source, so the archive doubles as a small labelled set. Idempotent."""
    folder = Path(folder)
    marker = folder / ".complete"
    if marker.exists():
        return folder
    rng = np.random.default_rng(seed)
    for name, image in _shipped_images().items():
        out = folder / name
        out.mkdir(parents=True, exist_ok=True)
        h, w = image.shape[:2]
        size = min(crop, h, w)
        for i in range(crops_per_source):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            Image.fromarray(np.ascontiguousarray(image[y : y + size, x : x + size])).save(out / f"{name}_{i:03d}.png")
    marker.write_text("ok\n")
    return folder
