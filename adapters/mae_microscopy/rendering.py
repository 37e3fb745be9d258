"""Figures for a person: per-channel panels and a false-colour composite of the input, the masked input
(each channel masked on its own) and the reconstruction (with the visible patches pasted back).

Colours follow the stain where the name is known (DNA blue, ER green, RNA cyan, AGP orange, Mito red,
brightfield gray, red/green/blue as themselves); other channels take the next colour of a fixed palette.
Each channel is stretched between the 1st and 99th percentile of its *input*, and the same stretch is used
for its masked and reconstructed panels, so brightness is comparable across a row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mae_domains.visualize import FIGURE_TITLE_PT, PANEL_TITLE_PT, save_figure  # noqa: E402

STAIN_COLOURS: dict[str, tuple[float, float, float]] = {
    "dna": (0.15, 0.35, 1.0), "hoechst": (0.15, 0.35, 1.0), "dapi": (0.15, 0.35, 1.0),
    "er": (0.1, 1.0, 0.2), "rna": (0.0, 0.9, 0.9), "agp": (1.0, 0.6, 0.0), "mito": (1.0, 0.1, 0.1),
    "brightfield": (0.7, 0.7, 0.7), "red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0),
}
PALETTE = [(1.0, 0.0, 1.0), (1.0, 1.0, 0.0), (0.5, 0.3, 1.0), (0.3, 1.0, 0.6), (1.0, 0.5, 0.7), (0.6, 0.8, 1.0)]
MAX_CHANNEL_PANELS = 8
HIDDEN_GRAY = 0.3  # masked pixels: mid gray, distinct from a black background


def channel_colours(names: Sequence[str]) -> np.ndarray:
    """``(C, 3)`` display colour per channel name."""
    out, spare = [], iter(PALETTE * (len(names) // len(PALETTE) + 1))
    for name in names:
        colour = STAIN_COLOURS.get(str(name).lower())
        out.append(colour if colour is not None else next(spare))
    return np.asarray(out, dtype=np.float32)


def channel_limits(image: np.ndarray, valid: np.ndarray | None = None, stretch: tuple[float, float] = (1, 99)) -> np.ndarray:
    """``(C, 2)`` low/high display limits per channel over the finite (valid) pixels."""
    limits = np.zeros((image.shape[0], 2), np.float32)
    for c in range(image.shape[0]):
        values = image[c][np.isfinite(image[c]) & (valid if valid is not None else True)]
        if values.size:
            limits[c] = np.percentile(values, stretch)
        if limits[c, 1] <= limits[c, 0]:
            limits[c, 1] = limits[c, 0] + 1e-6
    return limits


def stretched(image: np.ndarray, limits: np.ndarray, hidden: float = 0.0) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] per channel; NaN (hidden) pixels -> ``hidden``."""
    lo, hi = limits[:, 0, None, None], limits[:, 1, None, None]
    out = np.clip((image - lo) / (hi - lo), 0.0, 1.0)
    return np.nan_to_num(out, nan=hidden)


def composite(image: np.ndarray, limits: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """False-colour ``(H, W, 3)``: every stretched channel times its colour, summed and clipped; pixels
    hidden in every channel are gray."""
    out = np.clip(np.einsum("chw,ck->hwk", stretched(image, limits), colours), 0.0, 1.0)
    out[np.isnan(image).all(axis=0)] = HIDDEN_GRAY
    return out


def as_planar(image: np.ndarray) -> np.ndarray:
    """A volume ``(C, Z, H, W)`` is shown as its maximum projection over z."""
    return image.max(axis=1) if image.ndim == 4 else image


def sample_rows(image: np.ndarray, recon: np.ndarray, hidden: np.ndarray, names: Sequence[str],
                valid: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
    """``(title, (C, H, W))`` for the input, the masked input (hidden pixels NaN) and the reconstruction
    with visible pixels pasted back."""
    image, recon, hidden = as_planar(image), as_planar(recon), as_planar(hidden.astype(np.float32)) > 0.5
    masked = np.where(hidden, np.nan, image)
    pasted = np.where(hidden, recon, image)
    return [("input", image), ("masked", masked), ("reconstruction", pasted)]


def save_channel_figure(images: Sequence[np.ndarray], recons: Sequence[np.ndarray], hiddens: Sequence[np.ndarray],
                        names: Sequence[str], path: str | Path, title: str = "",
                        valids: Sequence[np.ndarray | None] | None = None) -> Path:
    """One block of three rows (input, masked, reconstruction) per sample; columns: the composite, then
    one gray panel per channel (the first ``MAX_CHANNEL_PANELS``) titled with its name."""
    names = list(names)
    shown = min(len(names), MAX_CHANNEL_PANELS)
    colours = channel_colours(names)
    rows = []
    for i, (image, recon, hidden) in enumerate(zip(images, recons, hiddens)):
        valid = None if valids is None else valids[i]
        planar_valid = None if valid is None else (valid.any(axis=0) if valid.ndim == 3 else valid)
        limits = channel_limits(as_planar(image), planar_valid)
        for label, panel in sample_rows(image, recon, hidden, names, valid):
            rows.append((f"#{i} {label}", panel, limits))
    fig, axes = plt.subplots(len(rows), shown + 1, figsize=(1.9 * (shown + 1), 1.9 * len(rows)), squeeze=False)
    for r, (label, panel, limits) in enumerate(rows):
        axes[r, 0].imshow(composite(panel, limits, colours))
        axes[r, 0].set_ylabel(label, fontsize=PANEL_TITLE_PT)
        for c in range(shown):
            axes[r, c + 1].imshow(stretched(panel[c:c + 1], limits[c:c + 1], HIDDEN_GRAY)[0], cmap="gray", vmin=0, vmax=1)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("composite", fontsize=PANEL_TITLE_PT)
    for c in range(shown):
        axes[0, c + 1].set_title(str(names[c]), fontsize=PANEL_TITLE_PT, color=tuple(colours[c] * 0.8))
    if title:
        fig.suptitle(title, fontsize=FIGURE_TITLE_PT)
    return save_figure(fig, path)


def reconstruction_figure(adapter, model, batch: dict, output, path: Path, max_samples: int = 2) -> Path:
    """The figure of a model's reconstruction of a batch (``render_reconstruction``)."""
    grid_batch = adapter.grid_batch(batch, output.pred.device)
    recon, hidden = model.reconstruct_pixels(grid_batch, output)
    n = min(max_samples, grid_batch.images.shape[0])
    images = grid_batch.images[:n].float().cpu().numpy()
    recon, hidden = recon[:n].float().cpu().numpy(), hidden[:n].cpu().numpy()
    valids = None if grid_batch.valid is None else list(grid_batch.valid[:n].cpu().numpy())
    names = list(batch["meta"][0].get("channel_names") or [f"channel_{i}" for i in range(images.shape[1])])
    return save_channel_figure(list(images), list(recon), list(hidden), names, path, title=adapter.name, valids=valids)
