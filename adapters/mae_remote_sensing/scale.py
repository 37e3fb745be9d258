"""``remote_sensing.scale``: Scale-MAE (Reed et al., ICCV 2023) on georeferenced chips of any band count.

- **GSD per sample**: read from each file's georeferencing (metres; degrees converted at the scene's
  latitude, :mod:`mae_remote_sensing.gsd`) and carried in ``meta["gsd"]``; the 2D sin-cos position code
  of the patch grid is multiplied by ``gsd / reference_gsd`` per sample before the sin-cos, in fp32
  (Scale-MAE's ``get_2d_sincos_pos_embed_with_resolution``), in the encoder and the decoder.
- **Multi-scale training**: every training read is a random resized crop: a square window of
  ``source_factor * sqrt(area) * chip`` native pixels (area fraction uniform in ``crop_area``, Scale-MAE's
  ``--scale_min/--scale_max`` 0.2/1.0 of a source window twice the input side) resampled onto the chip,
  and its effective GSD is what ``meta["gsd"]`` records. Coarser reads are decimated rasterio window
  reads (``out_shape``), for which GDAL reads the COG overview level instead of the full resolution.
- **Target at 2x** (``target_scale: 2``, Scale-MAE's input 224 / ``target_size`` 448): training reads the
  chip's ground window at ``target_scale`` x the input's resolution (from the file's finer pixels where it
  has them: the window is read on a grid of GSD / target_scale), and the input is that target
  area-averaged by ``target_scale`` on the device (:meth:`ScaleAdapter.grid_batch`); a pixel of the input
  is valid when every target pixel it averages is. Evaluation reads (embedding, statistics, figures of an
  archive) read the input only; the model then scores its predictions at the input's resolution.
- **Decoder**: dense, with two upsampling heads: a low-pass image at ``low_scale`` of the target (L2) and
  the residual ``x - up(down(x))`` at the target's resolution (``high_loss``: L2 as Scale-MAE's default,
  or L1), masked pixels only, the errors summed over bands per masked pixel (``loss_reduction:
  band_sum``, Scale-MAE's ``forward_loss``) or averaged over bands too (``mean``)
  (:mod:`mae_domains.models.decoding.frequency_heads`).
- **Evaluation**: the ``knn_multiscale`` protocol (:mod:`mae_remote_sensing.multiscale_knn`) as well as the
  shared ones.

Options (``data.options``) besides the common ones of :mod:`mae_remote_sensing.base`: ``reference_gsd``
(metres; GSD at which the code equals MAE's unscaled table), ``multiscale`` (random resized crops when
training), ``crop_area`` ([min, max] area fraction), ``source_factor``, ``target_scale`` (1 or more:
target side / input side), ``low_scale`` (of the target), ``residual_size`` (grid of the residual's low
pass, Scale-MAE's ``band_config[0]``; None = the token grid), ``high_loss`` (l2 | l1), ``high_weight``
(weight of the high-frequency term), ``loss_reduction`` (band_sum | mean), ``head_width`` (hidden width
of the upsampling heads; None = the decoder width).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

import torch
import torch.nn.functional as F

from mae_domains.config import MaskConfig, ModelConfig
from mae_domains.data.sample import Sample
from mae_domains.data.windows import PixelWindow, read_first_valid
from mae_domains.grid.batch import GridBatch
from mae_domains.models.decoding.frequency_heads import HIGH_LOSSES, REDUCTIONS
from mae_domains.models.embeddings.patch2d import PatchEmbed2D
from mae_domains.models.frequency_mae import FrequencyMAE, build_frequency_mae
from mae_remote_sensing.bands import wavelength_of
from mae_remote_sensing.base import COMMON_OPTION_HELP, COMMON_OPTIONS, RemoteSensingAdapter
from mae_remote_sensing.chips import ChipRef, random_window, window_rng
from mae_remote_sensing.gsd import draw_gsd_factor
from mae_remote_sensing.rendering import reconstruction_figure
from mae_remote_sensing.synthetic import synthetic_scene

log = logging.getLogger(__name__)

SCALE_OPTIONS: dict[str, Any] = {
    "reference_gsd": 10.0,
    "multiscale": True,
    "crop_area": [0.2, 1.0],
    "source_factor": 2.0,
    "target_scale": 1,
    "low_scale": 0.5,
    "residual_size": None,
    "high_loss": "l2",
    "high_weight": 1.0,
    "loss_reduction": "band_sum",
    "head_width": None,
}


class ScaleAdapter(RemoteSensingAdapter):
    name = "remote_sensing.scale"
    summary = ("Scale-MAE on multispectral GeoTIFF/COG, band files or Zarr: GSD-scaled position code per "
               "sample, multi-scale random resized crops, low/high-frequency decoder.")
    value_range = "reflectance or digital numbers as stored, each file's scale and offset applied"
    method_papers = ('Reed et al.: "Scale-MAE: A Scale-Aware Masked Autoencoder for Multiscale Geospatial '
                     'Representation Learning", ICCV 2023 (bair-climate-initiative/scale-mae)',)
    option_defaults = {**COMMON_OPTIONS, **SCALE_OPTIONS, "jitter": 0.0}
    option_help = {
        **COMMON_OPTION_HELP,
        "reference_gsd": "GSD in metres at which the position code equals MAE's unscaled table",
        "multiscale": "random resized crops in training, each with its effective GSD (Scale-MAE)",
        "crop_area": "[min, max] area fraction of the random resized crops (Scale-MAE: 0.2 to 1)",
        "source_factor": "side of the source window before the crop, in chip sides (Scale-MAE: 2)",
        "low_scale": "resolution of the decoder's low-pass image, as a fraction of the input",
        "residual_size": "[rows, cols] of the low pass behind the residual target (null: the token grid)",
        "high_weight": "weight of the loss on the high-frequency residual",
        "high_loss": "l2 (Scale-MAE's released default) or l1: the loss on the high-frequency residual",
        "loss_reduction": "band_sum (Scale-MAE: summed over bands per masked pixel) or mean (also over bands)",
        "target_scale": "2 reconstructs a target at twice the input's resolution, read from the file's finer "
                        "pixels (Scale-MAE's 448 px target of a 224 px input); 1: the input's resolution",
        "head_width": "hidden width of the upsampling heads (null: the decoder width)",
    }
    default_bands = ("B4", "B3", "B2")  # Scale-MAE pretrains on RGB; any band list works
    default_mask_strategy = "random"  # Scale-MAE masks uniformly at random
    evaluation_protocols = ("knn_multiscale", "knn", "linear_probe", "multilabel_map")
    mask_axis = None

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        if float(o["reference_gsd"]) <= 0:
            raise ValueError(f"adapter {self.name}: reference_gsd must be positive metres, got {o['reference_gsd']}")
        area = o["crop_area"]
        if not (isinstance(area, (list, tuple)) and len(area) == 2 and 0 < float(area[0]) <= float(area[1]) <= 1):
            raise ValueError(f"adapter {self.name}: crop_area must be [min, max] with 0 < min <= max <= 1, got {area!r}")
        if float(o["source_factor"]) <= 0:
            raise ValueError(f"adapter {self.name}: source_factor must be positive, got {o['source_factor']}")
        if o["residual_size"] is not None and not (isinstance(o["residual_size"], (list, tuple))
                                                   and len(o["residual_size"]) == 2):
            raise ValueError(f"adapter {self.name}: residual_size must be null or [rows, cols], got {o['residual_size']!r}")
        scale = o["target_scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 1 or int(scale) != scale:
            raise ValueError(f"adapter {self.name}: target_scale must be a whole number >= 1 (target side / input "
                             f"side; Scale-MAE: 2), got {scale!r}")
        if o["high_loss"] not in HIGH_LOSSES:
            raise ValueError(f"adapter {self.name}: high_loss must be one of {list(HIGH_LOSSES)}, "
                             f"got {o['high_loss']!r}")
        if o["loss_reduction"] not in REDUCTIONS:
            raise ValueError(f"adapter {self.name}: loss_reduction must be one of {list(REDUCTIONS)}, "
                             f"got {o['loss_reduction']!r}")
        self._warned_no_gsd = False

    @property
    def target_scale(self) -> int:
        return int(self.options["target_scale"])

    # ----- loading -------------------------------------------------------------------------------
    def read_training(self, ref: Any, seed: int) -> Sample:
        """A random resized crop (multi-scale) drawn anew for every sample seed, at the target's resolution."""
        factor = 1.0
        if self.options["multiscale"]:
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5CA1E])
            factor = draw_gsd_factor(rng, self.options["crop_area"], float(self.options["source_factor"]))
        return self.read_chip(ref, seed, factor, self.target_scale)

    def read_chip(self, ref: Any, seed: int, gsd_factor: float = 1.0, target_scale: int = 1) -> Sample:
        """The chip at ``gsd_factor`` x the native (or ``target_gsd``) GSD: a window of ``gsd_factor`` x
        the chip side in native pixels resampled onto the chip (decimated reads use COG overviews).
        ``meta["gsd"]`` is the effective GSD of the input, ``meta["gsd_factor"]`` the factor.

        ``target_scale`` s > 1 reads the same ground window at s x the resolution (a grid of GSD / s, so the
        file's own finer pixels where it has them), ``s x chip`` pixels a side: the target, from which
        :meth:`grid_batch` averages the input; ``meta["target_scale"]`` says so. A file without GSD gives
        its native pixels as the target (the input then covers s x the chip's native extent)."""
        if not isinstance(ref, ChipRef):
            raise TypeError(f"{self.name} reads ChipRef objects from discover(), got {type(ref).__name__}")
        scene = ref.frames[0]
        grid = scene.grid(self.bands, self.target_gsd)
        if gsd_factor != 1.0 and ref.window is None:
            if grid.gsd is None:
                self.warn_no_gsd(scene.source, "multi-scale crops are off")
                gsd_factor = 1.0
            else:
                grid = scene.grid(self.bands, math.sqrt(grid.gsd[0] * grid.gsd[1]) * gsd_factor)
        input_gsd = grid.gsd
        if target_scale > 1:
            if grid.gsd is not None:
                grid = scene.grid(self.bands, math.sqrt(grid.gsd[0] * grid.gsd[1]) / target_scale)
            else:
                self.warn_no_gsd(scene.source, f"the {target_scale}x target is its native pixels")

        def attempt(k: int) -> tuple[tuple, float]:
            rng = window_rng(ref, seed, k)
            if ref.window is not None:
                window = PixelWindow(*(v * target_scale for v in ref.window))
            else:
                window = random_window(rng, grid, (self.read_size * target_scale,) * 2)
            chip = scene.read(window, self.bands, grid)
            return (window, chip), float(chip.valid.mean())

        attempts = 1 if ref.window is not None else int(self.options["window_attempts"])
        (window, chip), fraction = read_first_valid(attempt, attempts, float(self.options["min_valid_fraction"]),
                                                    str(ref))
        image = np.where(chip.valid[None], chip.image, 0.0).astype(np.float32)
        bounds = grid.bounds(window)
        meta = {
            "source": ref.source, "sample_id": ref.sample_id, "channel_names": list(self.bands),
            "band_names": list(self.bands), "wavelengths": [wavelength_of(b) for b in self.bands],
            "crs": grid.crs, "bounds": list(bounds) if bounds else None, "window": list(window.as_tuple()),
            "gsd": list(input_gsd) if input_gsd else None, "gsd_factor": float(gsd_factor), "dates": [scene.date],
            "valid_fraction": fraction,
        }
        if target_scale > 1:  # pixels, window and chip_transform are the target's; gsd is the input's
            meta["target_scale"] = int(target_scale)
            meta["target_gsd"] = list(grid.gsd) if grid.gsd else None
        if grid.transform is not None:
            meta["chip_transform"] = list(grid.transform @ Affine.translation(window.col, window.row))[:6]
        return Sample(image[None], meta, chip.valid[None, None], self.label_value(ref.label))

    def warn_no_gsd(self, source: str, consequence: str) -> None:
        if not self._warned_no_gsd:
            log.warning("%s: %s has no GSD (no CRS and no data.options.gsd): %s", self.name, source, consequence)
            self._warned_no_gsd = True

    def sample_size(self, sample: Sample) -> int:
        """The chip, or ``target_scale`` x the chip for a training read at the target's resolution."""
        return self.chip_size * int(sample.meta.get("target_scale", 1))

    def pack(self, image: np.ndarray, valid: np.ndarray, meta: dict[str, Any], label: Any) -> Sample:
        return Sample(image[0], meta, valid[0], label)

    # ----- model inputs --------------------------------------------------------------------------
    def grid_batch(self, batch: dict[str, Any], device: torch.device) -> GridBatch:
        """A batch read at ``target_scale`` x the input's resolution becomes the target, and its area average
        by that factor the input (an input pixel is valid when all the target pixels it averages are)."""
        grid = super().grid_batch(batch, device)
        scales = {int(m.get("target_scale", 1)) for m in batch.get("meta") or [{}]}
        if len(scales) > 1:
            raise ValueError(f"a batch mixes target scales {sorted(scales)}; batches are read all for training "
                             "(with targets) or all for evaluation")
        scale = scales.pop()
        if scale == 1:
            return grid
        target = grid.images
        size = (target.shape[-2] // scale, target.shape[-1] // scale)
        images = F.interpolate(target.float(), size=size, mode="area").to(target.dtype)
        valid = None
        if grid.valid is not None:
            spatial = grid.valid.reshape(grid.valid.shape[0], 1, *grid.valid.shape[-2:]).float()
            valid = (F.interpolate(spatial, size=size, mode="area") > 1 - 1e-6).reshape(
                *grid.valid.shape[:-2], *size)
        return GridBatch(images, valid, grid.meta, target, grid.valid)

    # ----- model ---------------------------------------------------------------------------------
    @property
    def reference_gsd(self) -> float:
        return float(self.options["reference_gsd"])

    def build_embedding(self, model: ModelConfig) -> PatchEmbed2D:
        """A 2D patch embedding of all bands whose sin-cos code is scaled by ``gsd / reference_gsd``."""
        return PatchEmbed2D(len(self.bands), self.embed_dim(model), model.patch_size,
                            reference_spacing=(self.reference_gsd, self.reference_gsd))

    def build_model(self, model: ModelConfig, mask: MaskConfig) -> FrequencyMAE:
        mask = self.resolve_mask(mask)
        o = self.options
        return build_frequency_mae(self.build_embedding(model), model, mask_ratio=float(mask.ratio),
                                   masker=self.build_masker(mask), low_scale=float(o["low_scale"]),
                                   head_width=o["head_width"], residual_size=o["residual_size"],
                                   high_weight=float(o["high_weight"]), target_scale=self.target_scale,
                                   high_loss=o["high_loss"], reduction=o["loss_reduction"])

    # ----- visualization -------------------------------------------------------------------------
    def render_reconstruction(self, model, batch: dict[str, Any], output, path: Path) -> Path:
        return reconstruction_figure(self, model, batch, output, path, frames=False)

    # ----- testing -------------------------------------------------------------------------------
    def synthetic_sample(self, seed: int) -> Sample:
        """A chip of fields, a river and a town at a GSD between 5 and 20 m (varying with the seed), so a
        batch mixes scales; a nodata corner."""
        size = self.read_size
        gsd = float((5.0, 10.0, 20.0)[seed % 3])
        image, valid = synthetic_scene(seed, self.bands, size, size)
        meta = {"source": f"synthetic:{seed}", "sample_id": f"synthetic-{seed}", "channel_names": list(self.bands),
                "band_names": list(self.bands), "wavelengths": [wavelength_of(b) for b in self.bands],
                "crs": "EPSG:32633", "gsd": [gsd, gsd], "gsd_factor": 1.0, "window": [0, 0, size, size],
                "chip_transform": [gsd, 0.0, 500000.0, 0.0, -gsd, 5800000.0],
                "bounds": [500000.0, 5800000.0 - gsd * size, 500000.0 + gsd * size, 5800000.0], "dates": ["2021-06-15"]}
        return Sample(image[None], meta, valid[None, None], None)
