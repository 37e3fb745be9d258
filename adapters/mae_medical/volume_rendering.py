"""Three orthogonal mid-slices (axial, coronal, sagittal) of input, masked input and reconstruction."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mae_domains.visualize import FIGURE_TITLE_PT, PANEL_TITLE_PT, save_figure  # noqa: E402

PLANES = ("axial", "coronal", "sagittal")


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal middle planes of a RAS ``(Z, Y, X)`` volume in the radiological display
    convention: axial anterior up and patient's right on the viewer's left; coronal superior up, right on
    the left; sagittal superior up, anterior on the left."""
    z, y, x = (s // 2 for s in volume.shape)
    return [volume[z, ::-1, ::-1], volume[::-1, y, ::-1], volume[::-1, :, x][:, ::-1]]


def save_orthogonal_figure(images: np.ndarray, recon: np.ndarray, hidden: np.ndarray, path: str | Path,
                           valid: np.ndarray | None = None, title: str = "", max_samples: int = 2) -> Path:
    """Arrays ``(B, 1, Z, Y, X)``; per sample three rows (planes) of input / masked input / reconstruction.
    Hidden voxels are blank in the masked input; invalid (padding) voxels are drawn at the lower display
    limit in every panel."""
    n = min(max_samples, images.shape[0])
    fig, axes = plt.subplots(3 * n, 3, figsize=(7.5, 2.5 * 3 * n), squeeze=False)
    for b in range(n):
        image, rec = images[b, 0], recon[b, 0]
        masked = np.where(hidden[b, 0].astype(bool), np.nan, image)
        region = None if valid is None else np.asarray(valid[b]).reshape(image.shape).astype(bool)
        sel = image[region] if region is not None and region.any() else image
        low, high = np.percentile(sel, [1, 99]) if sel.size else (0.0, 1.0)
        high = max(float(high), float(low) + 1e-6)
        if region is not None:
            image, masked, rec = (np.where(region, v, low) for v in (image, masked, rec))
        for p, planes in enumerate(zip(*(mid_slices(v) for v in (image, masked, rec)))):
            for c, (plane, name) in enumerate(zip(planes, ("input", "masked input", "reconstruction"))):
                ax = axes[3 * b + p, c]
                ax.imshow(np.ma.masked_invalid(plane), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"#{b} {PLANES[p]}")
                if b == 0 and p == 0:
                    ax.set_title(name, fontsize=PANEL_TITLE_PT)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
