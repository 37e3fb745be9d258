"""What the 2D medical adapters share: discovery of DICOM / PNG / JPEG / TIFF archives and manifests, reading
one frame as a viewer displays it, labels, seeded one-channel augmentation, and the preview.

Options common to ``medical.xray`` and ``medical.ultrasound`` (``data.options``):

- display: ``window`` (index or explanation of the window / VOI LUT to use; 0 = the first),
  ``prefer_voi_lut`` (a VOI LUT sequence wins over a window when both are present), ``window_override``
  (``[centre, width]`` used instead of the file's);
- decoding: ``jpeg2000_min_size`` (large JPEG 2000 images are decoded at a reduced resolution whose
  shorter side is still at least this many pixels, 4-15x faster; ``auto`` = twice ``model.img_size``,
  0 = always full resolution);
- archive: ``frame_stride`` (every k-th frame of a cine), ``image_root``, ``split`` and ``no_finding`` for
  CSV manifests (see :mod:`mae_medical.frame_discovery`);
- augmentation: ``crop_scale``, ``crop_ratio`` (RandomResizedCrop), ``hflip``; downstream fine-tuning adds
  RandAugment-style ops (:mod:`mae_medical.randaugment`) of the protocol's ``randaugment_magnitude``.

Every sample is one channel, float32 in [0, 1] as read; ``transform`` normalizes with the archive's
statistics. ``model.in_chans`` is set to 1 when the adapter is bound.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from mae_domains.data.sample import BadSampleError, NormStats, Sample  # noqa: E402
from mae_domains.grid_adapter import GridAdapter  # noqa: E402
from mae_domains.models.embeddings import PatchEmbed2D  # noqa: E402
from mae_domains.data.pixel_limit import check_pixel_count, image_file_shape  # noqa: E402
from mae_medical.dicom_display import DisplaySettings  # noqa: E402
from mae_medical.dicom_header import cached_header, is_dicom_file  # noqa: E402
from mae_medical.dicom_reader import read_dicom_frame  # noqa: E402
from mae_medical.randaugment import rand_augment  # noqa: E402
from mae_medical.raster_images import read_raster  # noqa: E402
from mae_medical.frame_discovery import (  # noqa: E402
    Discovery, FrameRef, ManifestOptions, as_frame_ref, discover_sources,
)

log = logging.getLogger(__name__)

COMMON_OPTIONS: dict[str, Any] = {
    "window": 0,
    "prefer_voi_lut": True,
    "window_override": None,
    "jpeg2000_min_size": "auto",
    "frame_stride": 1,
    "image_root": None,
    "split": None,
    "no_finding": "No Finding",
    "crop_scale": [0.5, 1.0],
    "crop_ratio": [0.75, 1.3333333333333333],
    "hflip": True,
}
COMMON_OPTION_HELP: dict[str, str] = {
    "window": "which DICOM window or VOI LUT displays the image: an index (0 = the first) or its explanation",
    "prefer_voi_lut": "a VOI LUT sequence wins over a window centre/width when a file has both",
    "window_override": "[centre, width] used instead of the file's window (null: the file's)",
    "jpeg2000_min_size": "decode large JPEG 2000 at a reduced resolution whose shorter side keeps at least this many "
                         "pixels (auto: twice model.img_size; 0: always full resolution)",
    "frame_stride": "take every k-th frame of a multi-frame DICOM (cine)",
    "image_root": "folder that the paths of a CSV manifest are relative to (null: the manifest's folder)",
    "split": "keep only the manifest rows whose split column has this value (null: all rows)",
    "no_finding": "label of a manifest that means no finding (not a class; null: keep it as one)",
    "crop_scale": "area range of the RandomResizedCrop, as fractions of the image",
    "crop_ratio": "aspect-ratio range of the RandomResizedCrop",
    "hflip": "random horizontal flips in training",
}


class MedicalImageAdapter(GridAdapter):
    """Base of the 2D medical adapters (one gray channel, a 2D patch embedding)."""

    # What discovery looks for (DICOM files without an extension are found by their preamble too).
    file_patterns = ("*.dcm", "*.DCM", "*.dicom", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff")
    evaluation_protocols: ClassVar[tuple[str, ...]] = ("knn", "linear_probe", "finetune")
    # Protocol settings this modality's recipe uses, for the evaluation runner (see the report to the lead).
    protocol_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    option_defaults: ClassVar[dict[str, Any]] = dict(COMMON_OPTIONS)
    option_help: ClassVar[dict[str, str]] = dict(COMMON_OPTION_HELP)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        override = o["window_override"]
        if override is not None and (len(override) != 2 or float(override[1]) <= 0):
            raise ValueError(f"adapter {self.name}: window_override must be [centre, width > 0], got {override!r}")
        if not (isinstance(o["window"], (int, str)) and not isinstance(o["window"], bool)):
            raise ValueError(f"adapter {self.name}: window must be an index or a window name, got {o['window']!r}")
        low, high = (float(v) for v in o["crop_scale"])
        if not 0 < low <= high <= 1:
            raise ValueError(f"adapter {self.name}: crop_scale must satisfy 0 < low <= high <= 1, "
                             f"got {o['crop_scale']}")
        min_size = o["jpeg2000_min_size"]
        if not (min_size == "auto" or (isinstance(min_size, int) and not isinstance(min_size, bool) and min_size >= 0)):
            raise ValueError(f"adapter {self.name}: jpeg2000_min_size must be 'auto' or a size >= 0 (0 = off)")
        if int(o["frame_stride"]) < 1:
            raise ValueError(f"adapter {self.name}: frame_stride must be >= 1")
        self.display = DisplaySettings(
            window=o["window"], prefer_lut=bool(o["prefer_voi_lut"]),
            override=None if override is None else (float(override[0]), float(override[1])))
        self._pipelines: dict[bool, A.Compose] = {}

    def describe_input(self) -> dict[str, Any]:
        """Input-contract entries of an export: one gray channel."""
        return {"channels": ["gray"]}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pipelines"] = {}  # rebuilt in each worker
        return state

    def bind(self, config: Any) -> "MedicalImageAdapter":
        """Attach the run config; the model input is one channel whatever ``model.in_chans`` said."""
        config.model.in_chans = 1
        super().bind(config)
        return self

    @property
    def size(self) -> int:
        return int(self.config.model.img_size)

    @property
    def decode_min_size(self) -> int | None:
        """Shorter side a reduced JPEG 2000 decode must keep (None: full resolution)."""
        value = self.options["jpeg2000_min_size"]
        return 2 * self.size if value == "auto" else (int(value) or None)

    # ----- discovery and labels --------------------------------------------------------------------
    def discover(self, sources: Sequence[str | os.PathLike]) -> list[FrameRef]:
        """One reference per frame of every image in ``sources`` (files, folders, globs, CSV manifests);
        files without pixel data are left out, logged and kept in ``self.excluded``."""
        o = self.options
        found: Discovery = discover_sources(sources, ManifestOptions(
            image_root=o["image_root"], split=o["split"], no_finding=o["no_finding"],
            frame_stride=int(o["frame_stride"]),
            max_pixels=self.config.data.max_pixels))
        self.excluded = found.excluded
        if found.excluded:
            log.warning("%d file(s) left out (e.g. %s: %s)", len(found.excluded),
                        *found.excluded[0])
        return found.refs

    def label_of(self, ref: Any) -> Any:
        """The manifest's label (a name, or a tuple of names for multi-label manifests), else the
        parent folder's name."""
        ref = as_frame_ref(ref)
        return ref.label if ref.label is not None else Path(ref.path).parent.name

    def split_of(self, ref: Any) -> str | None:
        """The manifest row's ``split`` value (train / test ...), None without one."""
        return as_frame_ref(ref).split

    # ----- reading ---------------------------------------------------------------------------------
    def read_gray(self, ref: Any) -> tuple[np.ndarray, dict[str, Any], Any]:
        """``(image (H, W) in [0, 1], metadata, DICOM header or None)`` of one frame."""
        ref = as_frame_ref(ref)
        limit = self.config.data.max_pixels
        if is_dicom_file(ref.path):
            header = cached_header(ref.path)
            rows, cols = int(getattr(header, "Rows", 0) or 0), int(getattr(header, "Columns", 0) or 0)
            check_pixel_count(ref.path, (rows, cols, int(getattr(header, "SamplesPerPixel", 1) or 1)), limit,
                              "decoding a frame")
            frame = read_dicom_frame(ref.path, ref.frame, self.display, self.decode_min_size)
            return frame.image, frame.meta, frame.header
        check_pixel_count(ref.path, image_file_shape(str(ref.path)), limit)
        image, meta = read_raster(ref.path)
        return image, meta, None

    def read(self, ref: Any) -> Sample:
        """One frame, ``(1, H, W)`` in [0, 1]; labels are the evaluation runner's (``label_of``)."""
        image, meta, _ = self.read_gray(ref)
        return Sample(image[None], meta)

    def read_labelled(self, image: Any, label: Any, stats: NormStats | None = None) -> tuple[Sample, np.ndarray]:
        """An image (DICOM frame as displayed, or PNG/JPEG/TIFF) and its 2D mask of class ids (PNG or TIFF) on
        the same grid, for segmentation, at the evaluation path's working resolution: both resized like
        ``transform`` resizes for evaluation (shorter side to ``model.img_size``; bicubic / area for the image,
        nearest neighbour for the mask) but not centre-cropped (the whole image is predicted by sliding
        windows), then normalized with ``stats``. A mask on another grid is a :class:`BadSampleError`."""
        from mae_domains.data.label_masks import check_mask_grid, read_label_mask

        sample = self.read(image)
        labels = read_label_mask(label, self.config.data.max_pixels)
        check_mask_grid(labels, sample.image.shape, sample.source, label)
        if labels.max(initial=0) > np.iinfo(np.uint16).max:
            raise BadSampleError(str(label), f"label ids up to {int(labels.max())}; at most 65535 are supported")
        resize = A.Compose([A.SmallestMaxSize(max_size=self.size, interpolation=cv2.INTER_CUBIC,
                                              mask_interpolation=cv2.INTER_NEAREST, area_for_downscale="image")])
        masks = [labels.astype(np.uint16)] + ([] if sample.valid is None else [sample.valid.astype(np.uint8)])
        out = resize(image=sample.image[0], masks=masks)
        pixels = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
        valid = None if sample.valid is None else out["masks"][1].astype(bool)
        if valid is not None:
            pixels = np.where(valid, pixels, 0.0).astype(np.float32)
        pixels = pixels[None] if stats is None else stats.normalize(pixels[None])
        meta = {**sample.meta, "label_source": str(label)}
        return Sample(pixels, meta, valid), np.asarray(out["masks"][0]).astype(np.int64)

    # ----- augmentation ----------------------------------------------------------------------------
    def pipeline(self, train: bool) -> A.Compose:
        """RandomResizedCrop (+ horizontal flip) for training; resize of the shorter side and a centre
        crop for evaluation. Bicubic for images (area averaging when shrinking), nearest for the validity mask."""
        if train not in self._pipelines:
            o = self.options
            if train:
                steps: list[Any] = [A.RandomResizedCrop(size=(self.size, self.size), scale=tuple(o["crop_scale"]),
                                                        ratio=tuple(o["crop_ratio"]), interpolation=cv2.INTER_CUBIC,
                                                        mask_interpolation=cv2.INTER_NEAREST,
                                                        area_for_downscale="image")]
                if o["hflip"]:
                    steps.append(A.HorizontalFlip(p=0.5))
            else:
                steps = [A.SmallestMaxSize(max_size=self.size, interpolation=cv2.INTER_CUBIC,
                                           mask_interpolation=cv2.INTER_NEAREST, area_for_downscale="image"),
                         A.CenterCrop(height=self.size, width=self.size)]
            self._pipelines[train] = A.Compose(steps, seed=0)
        return self._pipelines[train]

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """Seeded crop/flip of the ``(1, H, W)`` image and its validity mask, then normalization; pixels
        outside the valid region are set to 0 (black) before normalizing."""
        pipe = self.pipeline(train)
        pipe.set_random_seed(seed % (2**32))
        image = sample.image[0]
        if sample.valid is not None:
            out = pipe(image=image, mask=sample.valid.astype(np.uint8))
            valid = out["mask"].astype(bool)
        else:
            out, valid = pipe(image=image), None
        pixels = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
        if valid is not None:
            pixels = np.where(valid, pixels, 0.0).astype(np.float32)
        pixels = pixels[None]
        if stats is not None:
            pixels = stats.normalize(pixels)
        return Sample(pixels, sample.meta, valid, sample.label)

    def finetune_transform(self, sample: Sample, seed: int, stats: NormStats | None,
                           settings: dict[str, Any]) -> Sample:
        """Fine-tuning's training transform: the crop/flip of pretraining, then RandAugment-style ops of
        magnitude ``settings["randaugment_magnitude"]`` (0 = none) on the [0, 1] image, then normalization."""
        out = self.transform(sample, seed, True, None)
        magnitude = float(settings.get("randaugment_magnitude") or 0)
        image, valid, _ = rand_augment(out.image[0], out.valid, magnitude, (seed * 7919 + 0x52A) % (2**63))
        pixels = image[None].astype(np.float32)
        if stats is not None:
            pixels = stats.normalize(pixels)
        return Sample(pixels, out.meta, valid, out.label)

    # ----- model -----------------------------------------------------------------------------------
    def build_embedding(self, model: Any) -> PatchEmbed2D:
        """MAE's 2D patch embedding, one input channel (timm-compatible keys on export)."""
        return PatchEmbed2D(1, self.embed_dim(model), int(model.patch_size))

    # ----- preview ---------------------------------------------------------------------------------
    def render_sample(self, sample: Sample, path: Path) -> Path:
        """The frame as a viewer shows it (values are already 0-1: no stretch), titled with how it was
        displayed (VOI window or LUT, photometric interpretation, frame)."""
        from mae_domains.preview import save_sample_preview

        meta = sample.meta
        details = [str(meta[k]) for k in ("photometric", "voi") if meta.get(k)]
        if int(meta.get("frames") or 1) > 1:
            details.append(f"frame {int(meta['frame']) + 1}/{meta['frames']}")
        if meta.get("scan_region"):
            details.append(f"scan region: {meta['scan_region']} (outside in magenta)")
        title = "\n".join([f"{self.name}: {Path(sample.source).name}", *details])
        return save_sample_preview(sample.image, path, meta, sample.valid, title=title)
