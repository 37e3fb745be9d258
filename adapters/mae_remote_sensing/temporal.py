"""``remote_sensing.temporal``: SatMAE-temporal / Prithvi on time series of one place.

T frames share one patch embedding; grid ``(time, y, x)``; each frame's date (year, day of year) gets a
sin-cos code concatenated to (SatMAE, default) or added to (Prithvi) the 2D position code; masking is
independent across time (default) or consistent (tube). Training chips use ``frames`` dates of a series
(a random ordered subset); ``frames: null`` takes every date, so any T works at inference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mae_domains.data.sample import BadSampleError, Sample
from mae_domains.models.embeddings.patch2d import TemporalPatchEmbed
from mae_domains.models.presets import get_preset
from mae_remote_sensing.base import COMMON_OPTIONS, RemoteSensingAdapter, series_dates
from mae_remote_sensing.chips import ChipRef
from mae_remote_sensing.manifest import date_features
from mae_remote_sensing.rendering import reconstruction_figure
from mae_remote_sensing.bands import wavelength_of
from mae_remote_sensing.scene import Scene
from mae_remote_sensing.sources import group_series
from mae_remote_sensing.synthetic import synthetic_scene

# Prithvi's six HLS bands, by their Sentinel-2 names
PRITHVI_BANDS = ("B2", "B3", "B4", "B8A", "B11", "B12")

TEMPORAL_OPTIONS: dict[str, Any] = {
    "frames": 3,
    "date_code": "concat",
    "date_fraction": 0.25,
    "masking": "independent",
    "decoder": "self",
}


class TemporalAdapter(RemoteSensingAdapter):
    name = "remote_sensing.temporal"
    summary = ("Time series of one place (Zarr (T, C, H, W), manifest series, or a folder of dated rasters): "
               "shared embedding, date code, independent masking across time.")
    option_defaults = {**COMMON_OPTIONS, **TEMPORAL_OPTIONS}
    mask_axis = "time"
    default_bands = PRITHVI_BANDS

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        frames = self.options["frames"]
        if frames is not None and (not isinstance(frames, int) or frames < 1):
            raise ValueError(f"adapter {self.name}: frames must be a positive integer or null, got {frames!r}")
        if self.options["date_code"] not in ("concat", "add"):
            raise ValueError(f"adapter {self.name}: date_code must be 'concat' or 'add'")
        if self.options["masking"] not in ("random", "consistent", "independent"):
            raise ValueError(f"adapter {self.name}: masking must be random, consistent or independent")

    # ----- loading -------------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | Path]) -> list[ChipRef]:
        series = group_series(self.scene_entries(sources))
        self.set_classes([items[0].label for _, items in series])
        refs: list[ChipRef] = []
        for _, items in series:
            refs.extend(self.refs_for(tuple(e.scene for e in items), items[0].label))
        return refs

    def choose_frames(self, ref: ChipRef, rng: np.random.Generator) -> tuple[Scene, ...]:
        """``frames`` dates: a random ordered subset for random chips, evenly spaced ones for grid chips."""
        count = self.options["frames"]
        available = len(ref.frames)
        if count is None:
            return ref.frames
        if available < count:
            raise BadSampleError(ref.source, f"series has {available} frame(s), fewer than frames={count}")
        if ref.window is None:
            picked = np.sort(rng.choice(available, size=count, replace=False))
        else:
            picked = np.round(np.linspace(0, available - 1, count)).astype(int)
        return tuple(ref.frames[int(i)] for i in picked)

    def pack(self, image: np.ndarray, valid: np.ndarray, meta: dict[str, Any], label: Any) -> Sample:
        return Sample(image, meta, valid[:, None], label)

    # ----- model ---------------------------------------------------------------------------------
    def batch_meta(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        out = super().batch_meta(batch, device)
        metas = batch.get("meta") or []
        if metas:
            out["dates"] = torch.from_numpy(np.stack([series_dates(m) for m in metas])).to(device, torch.float64)
        return out

    def build_embedding(self, model) -> TemporalPatchEmbed:
        """One patch projection shared by all frames, at the preset's width."""
        o = self.options
        return TemporalPatchEmbed(len(self.bands), get_preset(model.preset).embed_dim, model.patch_size,
                                  date_mode=o["date_code"], date_fraction=float(o["date_fraction"]))

    # ----- visualization -------------------------------------------------------------------------
    def render_reconstruction(self, model, batch: dict[str, Any], output, path: Path) -> Path:
        return reconstruction_figure(self, model, batch, output, path, frames=True)

    # ----- testing -------------------------------------------------------------------------------
    def synthetic_sample(self, seed: int) -> Sample:
        """T dated frames of one place: vegetation greens up and browns down over the season."""
        count = self.options["frames"] or 3
        size = self.read_size
        base, valid = synthetic_scene(seed, self.bands, size, size)
        dates = [f"2021-{month:02d}-15" for month in np.linspace(4, 10, count).round().astype(int)]
        frames = []
        for t, date in enumerate(dates):
            season = np.sin(np.pi * (date_features(date)[1] - 60) / 245)
            nir_like = np.array([1.0 + 0.3 * season if (wavelength_of(b) or 0) > 700 else 1.0 for b in self.bands],
                                np.float32)
            frames.append(base * nir_like[:, None, None])
        meta = {"source": f"synthetic:{seed}", "sample_id": f"synthetic-{seed}", "channel_names": list(self.bands),
                "band_names": list(self.bands), "wavelengths": [wavelength_of(b) for b in self.bands],
                "crs": "EPSG:32633", "gsd": [10.0, 10.0], "window": [0, 0, size, size],
                "chip_transform": [10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0],
                "bounds": [500000.0, 5800000.0 - 10 * size, 500000.0 + 10 * size, 5800000.0], "dates": dates}
        return Sample(np.stack(frames).astype(np.float32), meta, np.repeat(valid[None, None], count, axis=0), None)
