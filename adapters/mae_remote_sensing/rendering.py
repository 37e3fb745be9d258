"""Reconstruction figures of a GridMAE for a person: per chip (and per frame) labelled composites of the
input, the masked input of every band group, the reconstruction and the reconstruction with the visible
pixels pasted back, one stretch per chip (:mod:`mae_remote_sensing.visualize`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mae_remote_sensing.visualize import chip_limits, chip_panels, save_panels


def _group_indices(adapter) -> dict[str, list[int]] | None:
    """Band indices of each band group by group name (None without band groups)."""
    groups = getattr(adapter, "groups", None)
    if not groups:
        return None
    names = getattr(adapter, "group_names", None) or ["+".join(g) for g in groups]
    bands = list(adapter.bands)
    return {str(name): [bands.index(b) for b in group] for name, group in zip(names, groups)}


def reconstruction_rows(adapter, model, batch: dict[str, Any], output, frames: bool,
                        max_rows: int = 4) -> list[list[tuple[str, np.ndarray]]]:
    """The figure's panel arrays: rows of :func:`~mae_remote_sensing.visualize.chip_panels`, one per chip,
    or per frame of the first chips for time series (``frames``; the frames of a chip share its stretch)."""
    grid_batch = adapter.grid_batch(batch, output.pred.device)
    recon, hidden = model.reconstruct_pixels(grid_batch, output)
    # the target where the model reconstructs one of its own (Scale-MAE's 2x target): what recon is drawn on
    shown = grid_batch.target_images if grid_batch.target_images is not None else grid_batch.images
    images = shown.float().cpu().numpy()
    recon, hidden = recon.float().cpu().numpy(), hidden.cpu().numpy()
    valid = batch.get("valid")
    valid = None if valid is None else valid.cpu().numpy()
    metas = batch.get("meta") or [{}] * images.shape[0]
    bands = list(adapter.bands)
    groups = _group_indices(adapter)
    rows: list[list[tuple[str, np.ndarray]]] = []
    for i in range(images.shape[0]):
        waves = metas[i].get("wavelengths")
        limits = chip_limits(images[i], None if valid is None else valid[i])
        if frames:  # (T, C, H, W) per sample
            dates = metas[i].get("dates") or [None] * images.shape[1]
            for t in range(images.shape[1]):
                rows.append(chip_panels(images[i, t], recon[i, t], hidden[i, t], bands, f"#{i} {dates[t] or f't{t}'}",
                                        limits=limits, wavelengths=waves))
                if len(rows) >= max_rows:
                    break
        else:
            rows.append(chip_panels(images[i], recon[i], hidden[i], bands, f"#{i}", groups=groups, limits=limits,
                                    wavelengths=waves))
        if len(rows) >= max_rows:
            break
    return rows


def reconstruction_figure(adapter, model, batch: dict[str, Any], output, path: Path, frames: bool,
                          max_rows: int = 4) -> Path:
    """:func:`reconstruction_rows` drawn and saved as PNG (feature maps for an FG-MAE feature target)."""
    from mae_remote_sensing.feature_figure import feature_figure
    from mae_remote_sensing.feature_targets import FeatureTarget

    if isinstance(getattr(model, "target", None), FeatureTarget):
        return feature_figure(adapter, model, batch, output, path, max_rows)
    return save_panels(reconstruction_rows(adapter, model, batch, output, frames, max_rows), path, title=adapter.name)
