"""``medical.ultrasound``: the deblurring MAE for ultrasound (Kang et al. 2023, DeblurringMIM).

- Input: B-mode frames from DICOM (MONOCHROME, RGB, YBR_FULL/YBR_FULL_422, PALETTE COLOR; single or
  multi-frame, one sample per frame, decoded one frame at a time) or PNG/JPEG/TIFF, as gray in [0, 1].
- Scan region (:mod:`mae_medical.scan_region`): ``SequenceOfUltrasoundRegions``, else a user mask image
  (``region_mask``), else an automatic estimate. Pixels outside are invalid: black in the input, never
  targets (invalid tokens are forced into the masked set with zero loss weight), never counted in the
  normalization statistics.
- Deblurring: the encoder sees the image blurred by a Gaussian of ``blur_sigma`` (default 1.1, pixels of
  the model input), the target is the sharp image and the loss covers all patches (``model.query`` is
  ``all`` and visible tokens are scored too). The blur is applied in :meth:`grid_batch`, so embedding,
  linear probing and fine-tuning see blurred inputs exactly as pretraining did.
- Evaluation: classification from class folders or a manifest, with accuracy, macro-F1 and per-class
  ROC-AUC.

Options beyond :mod:`mae_medical.base`'s: ``blur_sigma``, ``scan_region`` (auto | dicom | mask | estimate |
none), ``region_mask`` (an image, or a folder of ``<file name>.png``), ``region_threshold`` and
``region_min_fraction`` (the estimate); ``frame_stride`` thins long cines.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch

from mae_domains.config import MaskConfig, ModelConfig
from mae_domains.data.sample import Sample
from mae_domains.grid import GridBatch
from mae_domains.models.grid_mae import GridMAE, GridMAEOutput
from mae_medical.base import COMMON_OPTION_HELP, COMMON_OPTIONS, MedicalImageAdapter
from mae_medical.blur import gaussian_blur
from mae_medical.rendering import save_deblurring_figure
from mae_medical.scan_region import RegionSettings, scan_region
from mae_medical.synthetic import ultrasound_frame

log = logging.getLogger(__name__)

ULTRASOUND_OPTIONS: dict[str, Any] = {
    **COMMON_OPTIONS,
    "crop_scale": [0.2, 1.0],  # MAE's default crop, as the deblurring MAE reference trains
    "blur_sigma": 1.1,
    "scan_region": "auto",
    "region_mask": None,
    "region_threshold": 0.04,
    "region_min_fraction": 0.05,
}


class UltrasoundAdapter(MedicalImageAdapter):
    name = "medical.ultrasound"
    summary = "Ultrasound frames (DICOM/PNG; scan region valid only): deblurring MAE, loss on all patches."
    value_range = "0-1: the frame as displayed, in gray; pixels outside the scan region invalid"
    method_papers = ('Kang et al.: "Deblurring Masked Autoencoder is Better Recipe for Ultrasound Image '
                     'Recognition", MICCAI 2023 (openmedlab/DeblurringMIM)',)
    default_mask_ratio = 0.75
    loss_on = "all"
    evaluation_protocols: ClassVar[tuple[str, ...]] = ("linear_probe", "knn", "finetune")
    option_defaults: ClassVar[dict[str, Any]] = dict(ULTRASOUND_OPTIONS)
    option_help: ClassVar[dict[str, str]] = {
        **COMMON_OPTION_HELP,
        "crop_scale": "area range of the RandomResizedCrop, as fractions of the frame (MAE's 0.2 to 1, as the "
                      "deblurring MAE trains)",
        "blur_sigma": "Gaussian blur (pixels of the model input) of what the encoder sees; the target stays sharp",
        "scan_region": "where the valid pixels come from: auto (DICOM regions, else region_mask, else an "
                       "estimate), dicom, mask, estimate or none (all valid)",
        "region_mask": "a mask image, or a folder of <file name>.png masks, marking the scan region",
        "region_threshold": "gray level (0-1) above which a pixel can belong to the estimated scan region",
        "region_min_fraction": "an estimated region covering less of the frame is discarded (all pixels valid)",
    }

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        if float(o["blur_sigma"]) < 0:
            raise ValueError(f"adapter {self.name}: blur_sigma must be >= 0, got {o['blur_sigma']}")
        self.region = RegionSettings(source=str(o["scan_region"]), mask=o["region_mask"],
                                     threshold=float(o["region_threshold"]),
                                     min_fraction=float(o["region_min_fraction"]))

    @property
    def blur_sigma(self) -> float:
        return float(self.options["blur_sigma"])

    # ----- reading ---------------------------------------------------------------------------------
    def read(self, ref: Any) -> Sample:
        """One frame ``(1, H, W)`` in [0, 1] with its scan region as the validity mask."""
        image, meta, header = self.read_gray(ref)
        valid, how = scan_region(image, meta["source"], header, self.region)
        meta = {**meta, "scan_region": how}
        if valid is not None:
            meta["valid_fraction"] = float(valid.mean())
        return Sample(image[None], meta, valid)

    # ----- model -----------------------------------------------------------------------------------
    def grid_batch(self, batch: dict[str, Any], device: torch.device) -> GridBatch:
        """The blurred images as input and the sharp images as the target."""
        grid = super().grid_batch(batch, device)
        sharp = grid.images
        return GridBatch(gaussian_blur(sharp, self.blur_sigma), grid.valid, grid.meta, sharp)

    def bind(self, config: Any) -> "UltrasoundAdapter":
        """Attach the run config; the deblurring MAE decodes every token, so ``model.query`` is ``all``
        (written so into the run's config)."""
        if config.model.query != "all":
            log.info("%s decodes every token (deblurring): model.query=%r set to 'all'", self.name, config.model.query)
            config.model.query = "all"
        super().bind(config)
        return self

    def build_model(self, model: ModelConfig, mask: MaskConfig) -> GridMAE:
        """The deblurring MAE decodes and scores every token: ``model.query`` becomes ``all``."""
        if model.query != "all":
            model = dataclasses.replace(model, query="all")
        return super().build_model(model, mask)

    def render_reconstruction(self, model: GridMAE, batch: dict[str, Any], output: GridMAEOutput, path: Path) -> Path:
        """Blurred input, masked input, sharp target, reconstruction; the scan region outlined."""
        grid = self.grid_batch(batch, output.pred.device)
        recon, hidden = model.reconstruct_pixels(grid, output)
        valid = None if grid.valid is None else grid.valid.cpu().numpy()
        return save_deblurring_figure(grid.images.float().cpu().numpy(), grid.target_images.float().cpu().numpy(),
                                      recon.float().cpu().numpy(), hidden.cpu().numpy(), valid, path,
                                      title=f"{self.name} (blur sigma {self.blur_sigma:g})")

    # ----- testing ---------------------------------------------------------------------------------
    def synthetic_sample(self, seed: int) -> Sample:
        """A 64 x 80 sector scan with burned-in annotations outside it; the sector is the valid region."""
        image, sector = ultrasound_frame(seed)
        meta = {"source": f"synthetic:ultrasound-{seed}", "sample_id": f"synthetic-ultrasound-{seed}",
                "modality": "US", "photometric": "MONOCHROME2", "frame": 0, "frames": 1, "scan_region": "synthetic"}
        return Sample(image[None], meta, sector)
