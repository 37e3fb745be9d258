"""Three orthogonal mid-slices (axial, coronal, sagittal) of a CT/MR volume as a radiologist views them
(radiological convention, directions labelled at the panel edges): the sample preview of ``inspect`` and
the input / masked input / reconstruction figures of training."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mae_domains.visualize import FIGURE_TITLE_PT, PANEL_TITLE_PT, save_figure  # noqa: E402

PLANES = ("axial", "coronal", "sagittal")
# Patient directions at the (top, bottom, left, right) edges of each plane as :func:`mid_slices` draws it.
DIRECTIONS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}
INVALID_RGB = (1.0, 0.0, 1.0)  # magenta, as the generic preview draws nodata


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal middle planes of a RAS ``(Z, Y, X)`` volume in the radiological display
    convention: axial anterior up and patient's right on the viewer's left; coronal superior up, right on
    the left; sagittal superior up, anterior on the left."""
    z, y, x = (s // 2 for s in volume.shape)
    return [volume[z, ::-1, ::-1], volume[::-1, y, ::-1], volume[::-1, :, x][:, ::-1]]


def label_directions(ax: plt.Axes, plane: str) -> None:
    """Write the patient directions (A/P, R/L, S/I) at the edges of a panel drawn by :func:`mid_slices`."""
    top, bottom, left, right = DIRECTIONS[plane]
    style = {"color": "yellow", "fontsize": 7, "fontweight": "bold", "transform": ax.transAxes}
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)


def volume_preview_figure(volume: np.ndarray, valid: np.ndarray | None = None, title: str = "") -> plt.Figure:
    """The mid-slices of a RAS ``(Z, Y, X)`` volume in [0, 1] (radiological convention, directions labelled),
    invalid voxels (padding) magenta."""
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.2), squeeze=False)
    region = np.ones(volume.shape, bool) if valid is None else np.asarray(valid).reshape(volume.shape).astype(bool)
    for ax, plane, picture, inside in zip(axes[0], PLANES, mid_slices(volume), mid_slices(region)):
        rgb = np.repeat(np.clip(picture, 0.0, 1.0)[..., None], 3, axis=-1)
        rgb[~inside] = INVALID_RGB
        ax.imshow(rgb, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"{plane} middle", fontsize=8)
        label_directions(ax, plane)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def save_volume_preview(volume: np.ndarray, path: str | Path, valid: np.ndarray | None = None,
                        title: str = "") -> Path:
    return save_figure(volume_preview_figure(volume, valid, title), path)


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
                label_directions(ax, PLANES[p])
                if c == 0:
                    ax.set_ylabel(f"#{b} {PLANES[p]}")
                if b == 0 and p == 0:
                    ax.set_title(name, fontsize=PANEL_TITLE_PT)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
