"""Render input / masked / reconstruction panels for a person (2D images, any channel count)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def to_display(image: np.ndarray, rgb_channels: Sequence[int] | None = None, stretch: tuple[float, float] = (2, 98)) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W[, 3])`` in [0, 1]: a 2-98 % percentile stretch per channel; three chosen
    channels make a (false) colour composite, one channel a grayscale image."""
    if rgb_channels is None:
        rgb_channels = [0, 1, 2] if image.shape[0] >= 3 else [0]
    chosen = np.stack([image[c] for c in rgb_channels], axis=-1).astype(np.float32)
    finite = np.isfinite(chosen)
    out = np.zeros_like(chosen)
    for c in range(chosen.shape[-1]):
        vals = chosen[..., c][finite[..., c]]
        if vals.size == 0:
            continue
        lo, hi = np.percentile(vals, stretch)
        out[..., c] = np.clip((chosen[..., c] - lo) / max(hi - lo, 1e-8), 0, 1)
    out[~finite] = 0
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
        for ax, panel, name in zip(axes[i], panels, names):
            shown = to_display(panel, rgb_channels)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path
