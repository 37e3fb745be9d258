"""Pictures of multispectral chips for a person: true/false colour composites (2-98 % stretch per band),
the masked input and the reconstruction."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mae_domains.visualize import save_figure, to_display  # noqa: E402
from mae_remote_sensing.bands import FALSE_COLOUR, TRUE_COLOUR, normalize_band_name  # noqa: E402


def composite_indices(band_names: Sequence[str], wanted: Sequence[str] = TRUE_COLOUR) -> list[int]:
    """Indices of ``wanted`` bands (e.g. B4, B3, B2); the first three bands (or one) when they are absent."""
    names = [normalize_band_name(b) for b in band_names]
    if all(w in names for w in wanted):
        return [names.index(w) for w in wanted]
    return [0, 1, 2] if len(names) >= 3 else [0]


def composite(image: np.ndarray, band_names: Sequence[str], wanted: Sequence[str] = TRUE_COLOUR,
              hidden: np.ndarray | None = None) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W, 3)`` display image; ``hidden`` ``(H, W)`` pixels are shown grey."""
    chosen = image[composite_indices(band_names, wanted)].astype(np.float32).copy()
    if hidden is not None:
        chosen[:, hidden] = np.nan
    out = to_display(chosen, list(range(chosen.shape[0])))
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    if hidden is not None:
        out[hidden] = 0.5
    return out


def save_panels(rows: Sequence[Sequence[tuple[str, np.ndarray]]], path: str | Path, title: str = "") -> Path:
    """A grid of titled images (one list of ``(title, HxWx3)`` per row), written atomically as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.4 * cols, 2.4 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_axis_off()
            if j < len(row):
                name, picture = row[j]
                ax.imshow(np.clip(picture, 0, 1))
                ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def chip_panels(image: np.ndarray, recon: np.ndarray, hidden: np.ndarray, band_names: Sequence[str],
                label: str = "") -> list[tuple[str, np.ndarray]]:
    """Input (true and false colour), masked input, reconstruction, reconstruction with visible pixels."""
    pasted = np.where(hidden[None], recon, image)
    prefix = f"{label} " if label else ""
    return [
        (f"{prefix}true colour", composite(image, band_names, TRUE_COLOUR)),
        (f"{prefix}false colour", composite(image, band_names, FALSE_COLOUR)),
        ("masked", composite(image, band_names, TRUE_COLOUR, hidden=hidden)),
        ("reconstruction", composite(recon, band_names, TRUE_COLOUR)),
        ("recon. false colour", composite(recon, band_names, FALSE_COLOUR)),
        ("recon. + visible", composite(pasted, band_names, TRUE_COLOUR)),
    ]
