"""Reconstruction figures of the deblurring MAE: per sample the blurred input the encoder saw (scan region
outlined in yellow), the masked input, the sharp target and the reconstruction. Pixels outside the scan
region are dimmed in every panel: they were never targets."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mae_domains.visualize import FIGURE_TITLE_PT, PANEL_TITLE_PT, save_figure  # noqa: E402

REGION_COLOUR = "yellow"
OUTSIDE_DIM = 0.35


def shared_limits(*planes: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """1st and 99th percentile of the finite values (inside the region when given) of all planes."""
    values = []
    for plane in planes:
        sel = np.isfinite(plane) & (valid if valid is not None else True)
        values.append(plane[sel])
    flat = np.concatenate(values) if values else np.zeros(1)
    if flat.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(flat, [1, 99])
    return float(low), float(max(high, low + 1e-6))


def to_rgb(plane: np.ndarray, limits: tuple[float, float], valid: np.ndarray | None) -> np.ndarray:
    """``(H, W)`` -> ``(H, W, 3)`` gray in [0, 1]; NaN (masked) black; outside the region dimmed."""
    low, high = limits
    gray = np.clip((plane - low) / (high - low), 0.0, 1.0)
    gray = np.where(np.isfinite(gray), gray, 0.0)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    if valid is not None:
        rgb[~valid] *= OUTSIDE_DIM
    return rgb


def save_deblurring_figure(blurred: np.ndarray, sharp: np.ndarray, recon: np.ndarray, hidden: np.ndarray,
                           valid: np.ndarray | None, path: str | Path, title: str = "", max_rows: int = 4) -> Path:
    """Arrays are ``(B, 1, H, W)`` (``valid`` ``(B, H, W)`` or ``(B, 1, H, W)``); one row per sample."""
    n = min(max_rows, blurred.shape[0])
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n), squeeze=False)
    names = ["input (blurred), scan region", "masked input", "target (sharp)", "reconstruction"]
    for i in range(n):
        region = None
        if valid is not None:
            region = np.asarray(valid[i]).astype(bool)
            region = region[0] if region.ndim == 3 else region
        masked = blurred[i, 0].copy()
        masked[hidden[i, 0].astype(bool)] = np.nan
        limits = shared_limits(sharp[i, 0], blurred[i, 0], valid=region)
        panels = [blurred[i, 0], masked, sharp[i, 0], recon[i, 0]]
        for k, (ax, panel) in enumerate(zip(axes[i], panels)):
            ax.imshow(to_rgb(panel, limits, region), interpolation="nearest")
            if region is not None and k in (0, 3) and region.any() and not region.all():
                ax.contour(region.astype(float), levels=[0.5], colors=REGION_COLOUR, linewidths=0.8)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(names[k], fontsize=PANEL_TITLE_PT)
    if title:
        fig.suptitle(title, fontsize=FIGURE_TITLE_PT)
    return save_figure(fig, path)
