"""Shared behaviour of the remote-sensing adapters: discovery, chip reading, augmentation, inputs.

Options common to both adapters (``data.options``):

- bands: ``bands`` (Sentinel-2 names, selects and orders), ``file_bands`` (names of a file's bands when it
  carries none; a different band count is rejected), ``sensor`` (auto | sentinel2 | landsat8 | landsat9:
  the data's sensor when neither metadata nor file names tell; other sensors' bands are mapped to
  Sentinel-2 names by wavelength, see :mod:`mae_remote_sensing.sensors`);
- files: ``layout`` (auto | multiband | band_files), ``band_pattern``, ``require_crs``, ``gsd`` (for files
  without georeferencing), ``mask_band`` + ``mask_invalid_values`` (e.g. SCL and [0, 1, 3, 8, 9, 10]) or
  ``mask_invalid_bits`` (e.g. Landsat QA_PIXEL and [0, 1, 2, 3, 4]);
- grid: ``target_gsd`` (metres; None = finest selected band), ``upsampling`` / ``downsampling`` (rasterio
  resampling names);
- chips (size = ``model.img_size``): ``sampling`` (random | grid), ``chips_per_scene`` (an int, or "auto"
  = the scene's area in chips), ``stride`` (grid), ``min_valid_fraction``, ``window_attempts``,
  ``jitter`` (extra read margin as a fraction of the chip, for a random crop per epoch), ``flips``;
- labels: ``label_from_folder`` (EuroSAT's ``class_name/*.tif``);
- reconstruction target: ``target`` (pixels | hog | indices | hog+indices, FG-MAE), ``indices`` (names, default
  NDVI, NDWI, NDBI), ``hog_window`` (Gaussian window in px; None = the patch size, 0 = none); see
  :mod:`mae_remote_sensing.feature_targets`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from affine import Affine

from mae_domains.data.pixel_limit import DEFAULT_MAX_PIXELS
from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.data.windows import PixelWindow, read_first_valid
from mae_domains.grid_adapter import GridAdapter
from mae_remote_sensing.band_files import DEFAULT_BAND_PATTERN
from mae_remote_sensing.bands import SENTINEL2_BANDS, normalize_band_names, wavelength_of
from mae_remote_sensing.feature_targets import build_feature_target, check_target_bands, fit_head, parse_target
from mae_remote_sensing.chips import ChipRef, chips_for_scene, grid_windows, random_window, window_rng
from mae_remote_sensing.geotiff import ReadSettings
from mae_remote_sensing.manifest import date_features
from mae_remote_sensing.network import apply_gdal_network_settings
from mae_remote_sensing.scene import Scene, TargetGrid
from mae_remote_sensing.sensors import SENSOR_CHOICES
from mae_remote_sensing.scene_discovery import SceneEntry, discover_scenes

log = logging.getLogger(__name__)

COMMON_OPTIONS: dict[str, Any] = {
    "bands": None,
    "file_bands": None,
    "layout": "auto",
    "band_pattern": DEFAULT_BAND_PATTERN,
    "require_crs": True,
    "gsd": None,
    "mask_band": None,
    "mask_invalid_values": [],
    "mask_invalid_bits": [],
    "sensor": "auto",
    "target_gsd": None,
    "upsampling": "bilinear",
    "downsampling": "average",
    "sampling": "random",
    "chips_per_scene": "auto",
    "stride": None,
    "min_valid_fraction": 0.5,
    "window_attempts": 4,
    "jitter": 0.125,
    "flips": True,
    "label_from_folder": True,
    "target": "pixels",
    "indices": ["NDVI", "NDWI", "NDBI"],
    "hog_window": None,
    "network_timeout": 30,  # s without an answer before a remote raster or STAC document fails
    "network_connect_timeout": 10,
    "network_retries": 2,
    "stac_confine_hrefs": True,  # local STAC hrefs must stay inside the STAC file's folder
}
SATMAE_PAPER = ('Cong et al.: "SatMAE: Pre-training Transformers for Temporal and Multi-Spectral Satellite '
                'Imagery", NeurIPS 2022 (sustainlab-group/SatMAE)')
COMMON_OPTION_HELP: dict[str, str] = {
    "network_timeout": "seconds a remote raster or STAC document may stay silent before it fails (GDAL, pystac)",
    "network_connect_timeout": "seconds to open a connection to a remote raster or STAC host",
    "network_retries": "retries of a remote read that failed or timed out",
    "stac_confine_hrefs": "local STAC asset hrefs and links must stay inside the STAC file's folder",
    "bands": "bands read, by Sentinel-2 name, in this order (null: the adapter's default bands)",
    "file_bands": "names of a file's bands when the file carries none (a different band count is rejected)",
    "layout": "auto, multiband (one file holds every band) or band_files (one file per band)",
    "band_pattern": "regular expression with groups scene and band that names band files",
    "require_crs": "refuse files without a coordinate reference system",
    "gsd": "ground sample distance in metres for files without georeferencing",
    "mask_band": "a quality band whose values or bits mark invalid pixels (e.g. SCL, QA_PIXEL)",
    "mask_invalid_values": "values of mask_band that are invalid (e.g. SCL [0, 1, 3, 8, 9, 10])",
    "mask_invalid_bits": "bits of mask_band that mark a pixel invalid (e.g. Landsat QA_PIXEL [0, 1, 2, 3, 4])",
    "sensor": "auto, sentinel2, landsat8 or landsat9: the sensor when neither metadata nor file names tell "
              "(other sensors' bands are mapped to Sentinel-2 names by wavelength)",
    "target_gsd": "grid of the chips in metres (null: the finest selected band)",
    "upsampling": "rasterio resampling for bands coarser than the grid",
    "downsampling": "rasterio resampling for bands finer than the grid",
    "sampling": "random chips (a new window each epoch) or a regular grid",
    "chips_per_scene": "chips per scene and epoch: a number, or auto (the scene's area in chips)",
    "stride": "step between grid chips in pixels (null: the chip size)",
    "min_valid_fraction": "a chip with less valid (not nodata, not masked) area is redrawn or skipped",
    "window_attempts": "random windows tried per chip before it is skipped",
    "jitter": "extra read margin, as a fraction of the chip, for a random crop per epoch",
    "flips": "random flips in training",
    "label_from_folder": "class label from the parent folder (EuroSAT's class_name/*.tif)",
    "target": "what the decoder reconstructs: pixels, hog, indices or hog+indices (FG-MAE)",
    "indices": "spectral indices of the indices target",
    "hog_window": "Gaussian window of the HOG target in pixels (null: the patch size; 0: none)",
}


class RemoteSensingAdapter(GridAdapter):
    """Base of ``remote_sensing.multispectral`` and ``remote_sensing.temporal``."""

    file_patterns = ("*.tif", "*.tiff", "*.TIF", "*.jp2", "*.csv")
    evaluation_protocols = ("knn", "linear_probe", "multilabel_map")
    default_bands: tuple[str, ...] = ()
    default_mask_strategy = "independent"  # SatMAE's better choice, along ``mask_axis``

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o["sampling"] not in ("random", "grid"):
            raise ValueError(f"adapter {self.name}: sampling must be 'random' or 'grid', got {o['sampling']!r}")
        if not (o["chips_per_scene"] == "auto" or (isinstance(o["chips_per_scene"], int) and o["chips_per_scene"] > 0)):
            raise ValueError(f"adapter {self.name}: chips_per_scene must be 'auto' or a positive integer")
        if not 0.0 <= float(o["min_valid_fraction"]) <= 1.0:
            raise ValueError(f"adapter {self.name}: min_valid_fraction must be in [0, 1]")
        if o["sensor"] not in SENSOR_CHOICES:
            raise ValueError(f"adapter {self.name}: sensor must be one of {', '.join(SENSOR_CHOICES)}, "
                             f"got {o['sensor']!r}")
        self.bands: tuple[str, ...] = normalize_band_names(o["bands"] or self.default_bands)
        gsd = o["gsd"]
        self.settings = ReadSettings(
            file_bands=tuple(o["file_bands"]) if o["file_bands"] else None,
            require_crs=bool(o["require_crs"]),
            gsd=None if gsd is None else ((float(gsd), float(gsd)) if np.isscalar(gsd) else (float(gsd[0]), float(gsd[1]))),
            upsampling=str(o["upsampling"]), downsampling=str(o["downsampling"]),
            mask_band=o["mask_band"], mask_invalid_values=tuple(float(v) for v in o["mask_invalid_values"]),
            mask_invalid_bits=tuple(int(b) for b in o["mask_invalid_bits"]), sensor=str(o["sensor"]),
            max_pixels=self.max_pixels, network_timeout=float(o["network_timeout"]),
            network_connect_timeout=float(o["network_connect_timeout"]), network_retries=int(o["network_retries"]),
            stac_confine_hrefs=bool(o["stac_confine_hrefs"]),
        )
        if min(self.settings.network_timeout, self.settings.network_connect_timeout) <= 0 or self.settings.network_retries < 0:
            raise ValueError(f"adapter {self.name}: network_timeout and network_connect_timeout must be positive "
                             "and network_retries at least 0")
        apply_gdal_network_settings(self.settings)
        self.settings.resampling_for(1.0, 1.0)  # unknown resampling names fail here, not in a worker
        self.classes: list[str] = []
        self.multilabel = False
        self.target_parts = parse_target(o["target"])
        check_target_bands(self.target_parts, self.bands, o["indices"] or ())
        if self.target_parts and type(self).build_model is not RemoteSensingAdapter.build_model:
            raise ValueError(f"adapter {self.name}: data.options.target={o['target']!r} is not available; this "
                             "adapter reconstructs its own targets (use target: pixels)")

    def bind(self, config: Any) -> "RemoteSensingAdapter":
        """Attach the run config: the model input has one channel per selected band, whatever
        ``model.in_chans`` said (so the run's ``config.yaml`` states the real input), and
        ``data.max_pixels`` goes into the read settings."""
        bands = getattr(self, "bands", None)  # unset while the base constructor binds its default config
        if bands:
            config.model.in_chans = len(bands)
        super().bind(config)
        if hasattr(self, "settings"):
            self.settings = dataclasses.replace(self.settings, max_pixels=self.max_pixels)
        return self

    @property
    def max_pixels(self) -> int | None:
        return getattr(self.config.data, "max_pixels", DEFAULT_MAX_PIXELS)

    def describe_input(self) -> dict[str, Any]:
        """Input-contract entries of an export (mae_domains.runs.input_contract): each band's centre
        wavelength and native GSD (Sentinel-2 table) in channel order, and the GSD of the model input."""
        infos = [SENTINEL2_BANDS.get(b) for b in self.bands]
        native = [i.native_gsd_m if i else None for i in infos]
        if self.target_gsd is not None:
            gsd, note = self.target_gsd, "data.options.target_gsd: every band resampled to it"
        elif self.options["gsd"] is not None:
            gsd, note = self.options["gsd"], "data.options.gsd, for files without georeferencing"
        elif all(n is not None for n in native) and native:
            gsd, note = min(native), ("the finest selected band's native resolution (Sentinel-2); bands are "
                                      "resampled to it, files at another resolution keep their own GSD")
        else:
            gsd, note = None, "each file's own georeferencing (finest selected band)"
        return {"wavelengths_nm": [wavelength_of(b) for b in self.bands], "native_gsd_m": native,
                "band_descriptions": [i.description if i else None for i in infos], "gsd_m": gsd, "gsd_note": note}


    # ----- sizes ---------------------------------------------------------------------------------
    @property
    def chip_size(self) -> int:
        return int(self.config.model.img_size)

    @property
    def target_gsd(self) -> float | None:
        value = self.options["target_gsd"]
        return None if value is None else float(value)

    @property
    def read_size(self) -> int:
        """Pixels read for a random training chip: the chip plus the jitter margin."""
        return self.chip_size + 2 * int(round(self.chip_size * float(self.options["jitter"]) / 2))

    # ----- discovery -----------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | Path]) -> list[ChipRef]:
        """Chips of every single-date scene (the temporal adapter groups scenes into series instead)."""
        entries = self.scene_entries(sources)
        self.check_bands([e.scene for e in entries])
        self.set_classes([e.label for e in entries])
        refs: list[ChipRef] = []
        for entry in entries:
            refs.extend(self.refs_for((entry.scene,), entry.label))
        return refs

    def scene_entries(self, sources: Sequence[str | Path]) -> list[SceneEntry]:
        o = self.options
        return discover_scenes(sources, self.settings, o["layout"], o["band_pattern"], bool(o["label_from_folder"]))

    def check_bands(self, scenes: Sequence[Scene]) -> None:
        """Refuse an archive in which no scene has every band the adapter needs, naming what the first
        scene has (sensor, bands, wavelengths, their Sentinel-2 names). Stops at the first scene that has
        them all; scenes that cannot be opened are left to fail (and be reported) when read."""
        lacking: list[tuple[Scene, list[str]]] = []
        for scene in scenes:
            try:
                have = scene.grid(None, None).band_names
            except (BadSampleError, OSError):
                continue
            missing = [b for b in self.bands if b not in have]
            if not missing:
                return
            lacking.append((scene, missing))
        if lacking:
            scene, missing = lacking[0]
            usable = [b for b in self.bands if b in scene.grid(None, None).band_names]
            raise ValueError(f"adapter {self.name}: none of the {len(lacking)} scene(s) has every band it needs "
                             f"({list(self.bands)}); {scene.source} lacks {missing}; it holds {scene.describe()}. "
                             f"{self.band_hint(usable)}")

    def band_hint(self, usable: Sequence[str]) -> str:
        """What to set instead, given the needed bands the data has."""
        return (f"Select bands it has, e.g. data.options.bands={list(usable)}" if usable else
                "Name the file's bands with data.options.file_bands, or set data.options.sensor")

    def set_classes(self, labels: Sequence[Any]) -> None:
        """The sorted class names of an archive; it is multi-label when any item has several labels."""
        names: set[str] = set()
        for label in labels:
            if label is None:
                continue
            names.update([label] if isinstance(label, str) else label)
        self.classes = sorted(names)
        self.multilabel = any(not isinstance(label, str) and label is not None and len(label) > 1 for label in labels)

    def refs_for(self, frames: tuple[Scene, ...], label: Any) -> list[ChipRef]:
        """Random-chip refs (training) or grid-window refs (embedding) of one scene or series."""
        o = self.options
        needs_grid = o["sampling"] == "grid" or o["chips_per_scene"] == "auto"
        grid = None
        if needs_grid:
            try:
                grid = frames[0].grid(self.bands, self.target_gsd)
            except BadSampleError as err:  # surfaces again at read time, where the engine logs and replaces it
                log.warning("cannot size %s: %s", frames[0].source, err)
        if o["sampling"] == "grid" and grid is not None:
            windows = grid_windows(grid.height, grid.width, self.chip_size, o["stride"])
            return [ChipRef(frames, w.as_tuple(), 0, label) for w in windows]
        count = o["chips_per_scene"] if isinstance(o["chips_per_scene"], int) else (
            chips_for_scene(grid, self.chip_size) if grid is not None else 1)
        return [ChipRef(frames, None, k, label) for k in range(count)]

    def label_of(self, ref: Any) -> Any:
        return ref.label if isinstance(ref, ChipRef) else super().label_of(ref)

    def sample_scene(self, ref: Any) -> str | None:
        """Chips are cut from scenes (a time series of frames counts as one)."""
        return ref.source if isinstance(ref, ChipRef) else None

    def label_value(self, label: Any) -> Any:
        """Class index (single label) or multi-hot float32 vector (several labels) for the dataset."""
        if label is None or not self.classes:
            return None
        names = [label] if isinstance(label, str) else list(label)
        if not self.multilabel:
            return self.classes.index(names[0])
        hot = np.zeros(len(self.classes), np.float32)
        hot[[self.classes.index(name) for name in names]] = 1.0
        return hot

    # ----- reading -------------------------------------------------------------------------------
    def read_frames(self, ref: ChipRef, frames: Sequence[Scene], grid: TargetGrid, window: PixelWindow):
        chips = [frame.read(window, self.bands, grid) for frame in frames]
        return np.stack([c.image for c in chips]), np.stack([c.valid for c in chips])

    def choose_frames(self, ref: ChipRef, rng: np.random.Generator) -> tuple[Scene, ...]:
        return ref.frames

    def read(self, ref: Any) -> Sample:
        """The chip at the window the run seed picks (the same every time: embedding, statistics)."""
        return self.read_chip(ref, int(self.config.engine.seed))

    def read_training(self, ref: Any, seed: int) -> Sample:
        """A random window drawn anew for every sample seed, i.e. every epoch."""
        return self.read_chip(ref, seed)

    def read_chip(self, ref: Any, seed: int) -> Sample:
        """The chip's pixels ``(T, C, h, w)`` and validity ``(T, h, w)`` (T = 1 for one scene), retried at
        other random windows while it is mostly nodata."""
        if not isinstance(ref, ChipRef):
            raise TypeError(f"{self.name} reads ChipRef objects from discover(), got {type(ref).__name__}")
        grid = ref.frames[0].grid(self.bands, self.target_gsd)
        def attempt(k: int) -> tuple[tuple, float]:
            rng = window_rng(ref, seed, k)
            window = PixelWindow(*ref.window) if ref.window is not None else random_window(rng, grid, (self.read_size,) * 2)
            frames = self.choose_frames(ref, rng)
            image, valid = self.read_frames(ref, frames, grid, window)
            return (window, frames, image, valid), float(valid.mean())

        attempts = 1 if ref.window is not None else int(self.options["window_attempts"])
        (window, frames, image, valid), fraction = read_first_valid(
            attempt, attempts, float(self.options["min_valid_fraction"]), str(ref))
        image = np.where(valid[:, None], image, 0.0).astype(np.float32)
        bounds = grid.bounds(window)
        meta = {
            "source": ref.source, "sample_id": ref.sample_id, "channel_names": list(self.bands),
            "band_names": list(self.bands), "wavelengths": [wavelength_of(b) for b in self.bands],
            "crs": grid.crs, "bounds": list(bounds) if bounds else None, "window": list(window.as_tuple()),
            "gsd": list(grid.gsd) if grid.gsd else None, "dates": [f.date for f in frames],
            "valid_fraction": fraction,
        }
        if grid.transform is not None:
            meta["chip_transform"] = list(grid.transform @ Affine.translation(window.col, window.row))[:6]
        # validity as (T, 1, h, w) so it broadcasts over the band axis of (T, C, h, w)
        return Sample(image, meta, valid[:, None], self.label_value(ref.label))

    def stats_view(self, sample: Sample) -> np.ndarray:
        """Bands first over all frames: ``(C, T, H, W)`` (matches ``valid`` ``(T, 1, H, W)`` flattened)."""
        image = sample.image if sample.image.ndim == 4 else sample.image[None]
        return np.ascontiguousarray(image.transpose(1, 0, 2, 3))

    # ----- augmentation --------------------------------------------------------------------------
    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """Random (train) or centre crop to the chip size, padding small scenes as nodata; seeded flips
        and 90-degree turns when training; invalid pixels set to the band mean; per-band normalization."""
        image = sample.image if sample.image.ndim == 4 else sample.image[None]
        valid = sample.valid.reshape(image.shape[0], *image.shape[-2:])
        rng = np.random.default_rng(seed)
        size = self.sample_size(sample)
        image, valid, offset = crop_or_pad(image, valid, size, rng if train else None)
        if train and self.options["flips"]:
            turns = int(rng.integers(4))
            image, valid = np.rot90(image, turns, axes=(-2, -1)), np.rot90(valid, turns, axes=(-2, -1))
            if rng.random() < 0.5:
                image, valid = image[..., ::-1], valid[..., ::-1]
        fraction = float(valid.mean())
        min_valid = float(self.options["min_valid_fraction"])
        if fraction < min_valid or fraction == 0:
            raise BadSampleError(sample.source, f"cropped chip has only {fraction:.0%} valid pixels "
                                                f"(min_valid_fraction={min_valid})")
        image = np.ascontiguousarray(image, dtype=np.float32)
        valid = np.ascontiguousarray(valid)
        if stats is not None:
            mean = np.asarray(stats.mean, np.float32).reshape(1, -1, 1, 1)
            std = np.maximum(np.asarray(stats.std, np.float32), 1e-6).reshape(1, -1, 1, 1)
            image = np.where(valid[:, None], image, mean)
            image = (image - mean) / std
        meta = dict(sample.meta)
        if stats is not None:  # lets feature targets (spectral indices) undo the normalization
            meta["norm_mean"], meta["norm_std"] = mean.reshape(-1).tolist(), std.reshape(-1).tolist()
        if meta.get("window"):
            row, col = meta["window"][0] + offset[0], meta["window"][1] + offset[1]
            meta["window"] = [row, col, size, size]
            if meta.get("chip_transform"):
                t = Affine(*meta["chip_transform"]) @ Affine.translation(offset[1], offset[0])
                meta["chip_transform"] = list(t)[:6]
                xs, ys = zip(t @ (0, 0), t @ (size, size))
                meta["bounds"] = [min(xs), min(ys), max(xs), max(ys)]
        return self.pack(image.astype(np.float32), valid, meta, sample.label)

    def sample_size(self, sample: Sample) -> int:
        """Side in pixels of a transformed sample: the chip (``model.img_size``)."""
        return self.chip_size

    def pack(self, image: np.ndarray, valid: np.ndarray, meta: dict[str, Any], label: Any) -> Sample:
        """The model's sample layout from ``(T, C, H, W)`` pixels and ``(T, H, W)`` validity."""
        return Sample(image, meta, valid, label)

    # ----- model inputs --------------------------------------------------------------------------
    def batch_meta(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Per-batch metadata tensors the embedding reads: ``spacing`` ``(B, 2)`` metres (y, x), ``dates``."""
        metas = batch.get("meta") or []
        out: dict[str, Any] = {}
        gsds = [m.get("gsd") for m in metas]
        if metas and all(g is not None for g in gsds):
            out["spacing"] = torch.tensor([[g[1], g[0]] for g in gsds], dtype=torch.float64, device=device)
        means, stds = [m.get("norm_mean") for m in metas], [m.get("norm_std") for m in metas]
        if metas and all(v is not None for v in means + stds):
            out["band_mean"] = torch.tensor(means, dtype=torch.float32, device=device)
            out["band_std"] = torch.tensor(stds, dtype=torch.float32, device=device)
        return out

    # ----- scene segmentation --------------------------------------------------------------------
    def open_scene(self, path: str | Path, stats: NormStats | None):
        """A whole scene as the windowed reader of ``mae-domains segment`` (its grid, CRS and transform)."""
        from mae_remote_sensing.scene_segmentation import open_scene_windows

        return open_scene_windows(self, path, stats)

    # ----- reconstruction target -----------------------------------------------------------------
    def build_target(self, model):
        """Pixels, or FG-MAE's HOG and/or spectral indices (``data.options.target``)."""
        return build_feature_target(self.options, self.bands, int(model.patch_size), bool(model.norm_pix_loss))

    def build_model(self, model, mask):
        """The GridMAE, with a prediction head as wide as a feature target when one is selected."""
        net = super().build_model(model, mask)
        if self.target_parts:
            fit_head(net, net.target.output_dim(net.embedding))
        return net


def crop_or_pad(image: np.ndarray, valid: np.ndarray, size: int, rng: np.random.Generator | None):
    """``(T, C, h, w)`` -> ``(T, C, size, size)``: a random (``rng``) or centred crop; smaller sides are
    padded with zeros marked invalid. Returns the pixels, validity and the crop's (row, col) offset."""
    h, w = image.shape[-2:]
    if h < size or w < size:
        ph, pw = max(size - h, 0), max(size - w, 0)
        pad = ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        image = np.pad(image, pad)
        valid = np.pad(valid, pad[1:], constant_values=False)
        h, w = image.shape[-2:]
        base = (-(ph // 2), -(pw // 2))
    else:
        base = (0, 0)
    if rng is not None:
        r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    else:
        r, c = (h - size) // 2, (w - size) // 2
    return image[..., r:r + size, c:c + size], valid[..., r:r + size, c:c + size], (base[0] + r, base[1] + c)


def series_dates(meta: dict[str, Any]) -> np.ndarray:
    """``(T, 2)`` (year, day of year) of a chip's frames, zeros where a frame has no date."""
    return np.asarray([date_features(d)[:2] for d in meta.get("dates") or [None]], np.float32)
