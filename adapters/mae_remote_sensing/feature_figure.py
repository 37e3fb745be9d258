"""Reconstruction figure of a model trained on FG-MAE feature targets: per chip, each spectral index as
target / masked / reconstruction maps, and HOG as the strongest of the 9 orientation bins per cell of the
first band of each token (a cyclic colour map) (the first frame or band group where the grid has several)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

from mae_domains.grid import scatter_tokens
from mae_remote_sensing.feature_targets import HOG_BINS, FeatureTarget
from mae_remote_sensing.visualize import save_panels

HIDDEN = np.array([0.6, 0.6, 0.6], np.float32)


def _first_slice_tokens(layout) -> torch.Tensor:
    """Token ids at index 0 of every non-spatial axis, in (y, x) order."""
    keep = torch.ones(layout.num_tokens, dtype=torch.bool)
    for name in layout.names:
        if name not in ("y", "x"):
            keep &= layout.coordinates(name) == 0
    return torch.nonzero(keep).flatten()


def _maps(vectors: np.ndarray, target: FeatureTarget, embedding, gh: int, gw: int) -> dict[str, np.ndarray]:
    """Per-token feature vectors ``(gh*gw, P)`` of one chip -> named 2D maps."""
    dims = target.part_dims(embedding)
    out, start = {}, 0
    if "hog" in dims:
        k = target.cells_per_patch
        hog = vectors[:, start:start + HOG_BINS * k * k].reshape(gh, gw, HOG_BINS, k, k)
        dominant = hog.argmax(axis=2) / (HOG_BINS - 1)  # strongest orientation bin, 0..1
        out["HOG orientation"] = dominant.transpose(0, 2, 1, 3).reshape(gh * k, gw * k)
        start += dims["hog"]
    if "indices" in dims:
        p, n = target.patch_size, len(target.indices)
        idx = vectors[:, start:start + dims["indices"]].reshape(gh, gw, p, p, n).transpose(0, 2, 1, 3, 4)
        idx = idx.reshape(gh * p, gw * p, n)
        out.update({name: idx[..., i] for i, name in enumerate(target.indices)})
    return out


def _colour(name: str, values: np.ndarray, hidden: np.ndarray | None = None) -> np.ndarray:
    if name.startswith("HOG"):
        rgb = matplotlib.colormaps["twilight"](np.clip(values, 0.0, 1.0))[..., :3]  # cyclic: orientations
    else:
        rgb = matplotlib.colormaps["RdYlGn"](np.clip((values + 1.0) / 2.0, 0.0, 1.0))[..., :3]
    rgb = rgb.astype(np.float32)
    if hidden is not None:
        rgb[hidden] = HIDDEN
    return rgb


def feature_figure(adapter, model, batch: dict[str, Any], output, path: Path, max_rows: int = 4) -> Path:
    """Target, masked target and reconstruction of every feature map, one row per map and chip."""
    target: FeatureTarget = model.target
    grid_batch = adapter.grid_batch(batch, output.pred.device)
    with torch.no_grad():
        full_target, _ = target(grid_batch, model.embedding, output.layout)
        merged = scatter_tokens(output.pred.to(full_target.dtype), output.query_ids, full_target)
    layout = output.layout
    gh, gw = layout.axis("y").size, layout.axis("x").size
    ids = _first_slice_tokens(layout).to(merged.device)
    rows = []
    for i in range(min(merged.shape[0], max_rows)):
        wanted = _maps(full_target[i, ids].float().cpu().numpy(), target, model.embedding, gh, gw)
        recon = _maps(merged[i, ids].float().cpu().numpy(), target, model.embedding, gh, gw)
        masked = output.mask[i, ids].reshape(gh, gw).cpu().numpy() > 0.5
        for name, values in wanted.items():
            scale = values.shape[0] // gh
            hidden = np.kron(masked, np.ones((scale, scale), bool))
            rows.append([(f"#{i} {name}", _colour(name, values)), ("masked", _colour(name, values, hidden)),
                         ("reconstruction", _colour(name, recon[name]))])
    return save_panels(rows[: 3 * max_rows], path, title=f"{adapter.name}: {target!r}")
