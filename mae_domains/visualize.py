"""Render input / masked / reconstruction panels for a person (2D images, any channel count)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def stretch_limits(image: np.ndarray, rgb_channels: Sequence[int], stretch: tuple[float, float] = (2, 98)) -> np.ndarray:
    """Per displayed channel ``(low, high)`` percentiles of the finite values: shape ``(k, 2)``."""
    limits = np.zeros((len(rgb_channels), 2), np.float32)
    for i, c in enumerate(rgb_channels):
        vals = image[c][np.isfinite(image[c])]
        if vals.size:
            limits[i] = np.percentile(vals, stretch)
    return limits


def default_rgb(image: np.ndarray) -> list[int]:
    return [0, 1, 2] if image.shape[0] >= 3 else [0]


def to_display(image: np.ndarray, rgb_channels: Sequence[int] | None = None, limits: np.ndarray | None = None) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W[, 3])`` in [0, 1]: three chosen channels make a (false) colour
    composite, one channel a grayscale image; ``limits`` (default: this image's 2-98 % stretch) lets
    several panels share one stretch."""
    rgb_channels = list(rgb_channels) if rgb_channels is not None else default_rgb(image)
    limits = stretch_limits(image, rgb_channels) if limits is None else limits
    chosen = np.stack([image[c] for c in rgb_channels], axis=-1).astype(np.float32)
    lo, hi = limits[:, 0], limits[:, 1]
    out = np.clip((chosen - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    out[~np.isfinite(chosen)] = 0
    return out[..., 0] if out.shape[-1] == 1 else out


def mask_to_pixels(mask: torch.Tensor, grid_hw: tuple[int, int], patch_size: int) -> np.ndarray:
    """Token mask ``(N,)`` (1 = removed) -> pixel mask ``(H, W)``."""
    m = mask.detach().float().cpu().reshape(grid_hw).numpy()
    return np.kron(m, np.ones((patch_size, patch_size)))


def save_reconstruction_grid(
    images: np.ndarray,
    reconstructions: np.ndarray,
    pixel_masks: np.ndarray,
    path: str | Path,
    rgb_channels: Sequence[int] | None = None,
    title: str = "",
) -> Path:
    """One row per sample: input, masked input, reconstruction, reconstruction with visible patches pasted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = images.shape[0]
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n), squeeze=False)
    for i in range(n):
        masked = images[i].copy()
        masked[:, pixel_masks[i] > 0.5] = np.nan
        pasted = np.where(pixel_masks[i][None] > 0.5, reconstructions[i], images[i])
        panels = [images[i], masked, reconstructions[i], pasted]
        names = ["input", "masked", "reconstruction", "reconstruction + visible"]
        channels = list(rgb_channels) if rgb_channels is not None else default_rgb(images[i])
        limits = stretch_limits(images[i], channels)
        for ax, panel, name in zip(axes[i], panels, names):
            shown = to_display(panel, channels, limits)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, dpi: int = 80) -> Path:
    """Lay out, write atomically (temp file + rename) and close a matplotlib figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path
