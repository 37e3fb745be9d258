"""``remote_sensing.temporal``: SatMAE-temporal / Prithvi on time series of one place.

T frames share one patch embedding; grid ``(time, y, x)``; each frame's date gets a sin-cos code. Masking
is ``independent`` across time (SatMAE's: uniform over all T x L tokens), ``stratified`` (same kept count
per date), or ``consistent`` (tube). Training chips use ``frames`` dates of a series (a random ordered
subset); ``frames: null`` takes every date, so any T works at inference.

Date codes (``data.options.date_preset``):

- ``null`` (ours, default): (year, day of year), coded sin-cos in ``date_fraction`` of the width (0.25)
  concatenated to the 2D position code (``date_code: concat``) or added at full width (``add``).
- ``satmae``: SatMAE's ``models_mae_temporal.py``: (year - 2002, month - 1, hour), each component in a
  third of the date code, concatenated to the 2D position code; the CLS token gets no code. The date code
  is SatMAE's absolute 384 encoder dims and 192 decoder dims at every width (ViT-B 384 of 768, ViT-L 384
  of 1024, ViT-H 384 of 1280); where that would leave the position code less than half the width (ViT-S,
  a narrow decoder) it is 3/8 of the width. ``date_fraction`` set explicitly replaces the absolute split
  by that fraction of every width. The hour is read from the date text (``T10:30``), else 0.
- ``prithvi``: Prithvi-EO-2.0 (``prithvi_mae.py``): a 3D sin-cos table of (frame index, y, x) in 4/16,
  6/16, 6/16 of the width plus a full-width code of (year, day of year), the year in the first half,
  added (``TemporalEncoder`` with a fixed scale of 1).

A preset fixes ``date_code``; ``date_fraction`` (null = the preset's split) applies to ``null`` and
``satmae``; Prithvi's code is added at full width, so it takes none.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mae_domains.data.sample import BadSampleError, Sample
from mae_domains.grid import GridLayout, expand_along_axis, value_codes
from mae_domains.grid.batch import GridBatch
from mae_domains.grid.codes import grid_index_codes
from mae_domains.models.embeddings.patch2d import TemporalPatchEmbed
from mae_remote_sensing.base import (
    COMMON_OPTION_HELP, COMMON_OPTIONS, SATMAE_PAPER, RemoteSensingAdapter, series_dates,
)
from mae_remote_sensing.chips import ChipRef
from mae_remote_sensing.manifest import date_features, parse_date
from mae_remote_sensing.rendering import reconstruction_figure
from mae_remote_sensing.bands import wavelength_of
from mae_remote_sensing.scene import Scene
from mae_remote_sensing.scene_discovery import group_series
from mae_remote_sensing.synthetic import synthetic_scene

log = logging.getLogger(__name__)


def overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two ``(left, bottom, right, top)`` boxes share an area."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def fmt_box(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in box) + ")"


# Prithvi's six HLS bands, by their Sentinel-2 names
PRITHVI_BANDS = ("B2", "B3", "B4", "B8A", "B11", "B12")

TEMPORAL_OPTIONS: dict[str, Any] = {
    "frames": 3,
    "date_preset": None,
    "date_code": "concat",
    "date_fraction": None,
}

DATE_PRESETS = ("satmae", "prithvi")
SATMAE_MIN_YEAR = 2002  # hard-coded for fMoW in SatMAE's util/datasets.py
SATMAE_DATE_WIDTHS = (384, 192)  # encoder and decoder date dims at every SatMAE width
SATMAE_DATE_FRACTION = 384 / 1024  # where the absolute width would not fit: 3/8, as 384 of 1024 and 192 of 512
DEFAULT_DATE_FRACTION = 0.25
PRITHVI_POSITION_WEIGHTS = (6, 6, 4)  # x, y, frame index in sixteenths of the width
_HOUR = re.compile(r"\d[T ](\d{2}):\d{2}")


def satmae_date_values(iso: str | None) -> tuple[float, float, float]:
    """SatMAE's date inputs ``(year - 2002, month - 1, hour)`` of a date text; zeros when unknown."""
    if not iso:
        return (0.0, 0.0, 0.0)
    d = parse_date(iso)
    hour = _HOUR.search(str(iso))
    return (float(d.year - SATMAE_MIN_YEAR), float(d.month - 1), float(hour.group(1)) if hour else 0.0)


def satmae_series_dates(meta: dict[str, Any]) -> np.ndarray:
    """``(T, 3)`` SatMAE date inputs of a chip's frames."""
    return np.asarray([satmae_date_values(d) for d in meta.get("dates") or [None]], np.float32)


class PrithviTemporalPatchEmbed(TemporalPatchEmbed):
    """Prithvi-EO-2.0's codes on the shared-projection frames: the 3D (frame, y, x) sin-cos table plus the
    full-width (year, day of year) code, added, at any width (the decoder's too)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16) -> None:
        super().__init__(in_chans, embed_dim, patch_size, date_mode="add")

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        device = batch.images.device
        dates = self.date_values(batch, layout.axis("time").size).to(device)
        position = grid_index_codes(layout, width, PRITHVI_POSITION_WEIGHTS, device=device)
        return position + expand_along_axis(value_codes(width, dates), layout, "time")


class TemporalAdapter(RemoteSensingAdapter):
    name = "remote_sensing.temporal"
    summary = ("Time series of one place (Zarr (T, C, H, W), manifest series, or a folder of dated rasters): "
               "shared embedding, date code, independent masking across time.")
    value_range = "reflectance or digital numbers as stored, each file's scale and offset applied"
    method_papers = (SATMAE_PAPER, 'Jakubik et al.: "Foundation Models for Generalist Geospatial Artificial '
                                   'Intelligence" (Prithvi), 2023')
    option_defaults = {**COMMON_OPTIONS, **TEMPORAL_OPTIONS}
    option_help = {
        **COMMON_OPTION_HELP,
        "frames": "dates per training sample, an ordered random subset of the series (null: every date)",
        "date_preset": "date code: null (ours: year, day of year), satmae or prithvi (fixes date_code and "
                       "date_fraction)",
        "date_code": "the date code concatenated to the position code (concat) or added at full width (add)",
        "date_fraction": "share of the width given to the date code with concat",
    }
    mask_axis = "time"
    default_bands = PRITHVI_BANDS

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        frames = self.options["frames"]
        if frames is not None and (not isinstance(frames, int) or frames < 1):
            raise ValueError(f"adapter {self.name}: frames must be a positive integer or null, got {frames!r}")
        if self.options["date_code"] not in ("concat", "add"):
            raise ValueError(f"adapter {self.name}: date_code must be 'concat' or 'add'")
        preset = self.options["date_preset"]
        if preset is not None and preset not in DATE_PRESETS:
            raise ValueError(f"adapter {self.name}: date_preset must be null (year, day of year), 'satmae' or "
                             f"'prithvi', got {preset!r}")
        fraction = self.options["date_fraction"]
        if fraction is not None:
            if preset == "prithvi":
                raise ValueError(f"adapter {self.name}: date_fraction={fraction} does not apply to date_preset=prithvi "
                                 "(its date code is added at full width); leave date_fraction null")
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < float(fraction) < 1:
                raise ValueError(f"adapter {self.name}: date_fraction must be a number between 0 and 1 (or null: "
                                 f"the preset's split), got {fraction!r}")

    # ----- loading -------------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | Path]) -> list[ChipRef]:
        """Chips of every series with at least ``frames`` dates; shorter series are left out with a warning,
        and an archive with none long enough is refused, saying how many dates it has."""
        series = group_series(self.scene_entries(sources))
        self.check_bands([e.scene for _, items in series for e in items])
        series = self.long_enough(series)
        self.set_classes([items[0].label for _, items in series])
        refs: list[ChipRef] = []
        for _, items in series:
            refs.extend(self.refs_for(tuple(e.scene for e in items), items[0].label))
        return refs

    def long_enough(self, series: list[tuple[str, list]]) -> list[tuple[str, list]]:
        count = self.options["frames"]
        if count is None:
            return series
        short = [(key, items) for key, items in series if len(items) < count]
        if not short:
            return series
        lengths = sorted({len(items) for _, items in series})
        example = f"{short[0][0]} has {len(short[0][1])} date(s)"
        if len(short) == len(series):
            raise ValueError(
                f"adapter {self.name}: every series has fewer dates than frames={count} ({len(series)} series with "
                f"{', '.join(map(str, lengths))} date(s); e.g. {example}). Set data.options.frames to at most "
                f"{max(lengths)} (or null: every date), or give longer series: a manifest CSV with date and series "
                f"columns, a folder of dated rasters per place, or a (T, C, H, W) Zarr array")
        log.warning("%s: %d of %d series have fewer dates than frames=%d and are left out (e.g. %s)",
                    self.name, len(short), len(series), count, example)
        return [(key, items) for key, items in series if len(items) >= count]

    def read_frames(self, ref: ChipRef, frames: Sequence[Scene], grid, window):
        """Frames of one chip; a frame that does not cover the chip's place is refused (a series that mixes
        different places, e.g. unrelated rasters in one folder)."""
        bounds = grid.bounds(window)
        if bounds is not None:
            for frame in frames[1:]:
                extent = frame.extent() if frame.grid(None, None).crs == grid.crs else None
                if extent is not None and not overlaps(extent, bounds):
                    raise BadSampleError(str(ref), f"frame {frame.source} covers {fmt_box(extent)}, not this chip "
                                                   f"({fmt_box(bounds)}) of {frames[0].source}: the series mixes "
                                                   f"different places; give one place per series (one folder "
                                                   f"per place, or a manifest with a series column)")
        return super().read_frames(ref, frames, grid, window)

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
            dates_of = satmae_series_dates if self.options["date_preset"] == "satmae" else series_dates
            out["dates"] = torch.from_numpy(np.stack([dates_of(m) for m in metas])).to(device, torch.float64)
        return out

    def build_embedding(self, model) -> TemporalPatchEmbed:
        """One patch projection shared by all frames, at the preset's width, with the date code of
        ``date_preset`` (see the module docstring)."""
        o = self.options
        width = self.embed_dim(model)
        if o["date_preset"] == "prithvi":
            return PrithviTemporalPatchEmbed(len(self.bands), width, model.patch_size)
        fraction = o["date_fraction"]
        if o["date_preset"] == "satmae":
            if fraction is None:
                return TemporalPatchEmbed(len(self.bands), width, model.patch_size, date_mode="concat",
                                          date_fraction=SATMAE_DATE_FRACTION, date_widths=SATMAE_DATE_WIDTHS)
            return TemporalPatchEmbed(len(self.bands), width, model.patch_size, date_mode="concat",
                                      date_fraction=float(fraction))
        return TemporalPatchEmbed(len(self.bands), width, model.patch_size, date_mode=o["date_code"],
                                  date_fraction=DEFAULT_DATE_FRACTION if fraction is None else float(fraction))

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
