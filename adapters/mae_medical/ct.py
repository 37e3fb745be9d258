"""``medical.ct``: 3D MAE on CT (and MR) volumes, the SelfMedMAE / MONAI recipe.

- Input: NIfTI files (nibabel, float32) and DICOM series folders (files with or without extension, grouped
  by SeriesInstanceUID, ordered along the slice normal; :mod:`mae_medical.dicom_series`). Each series or
  file is one volume, named in the log.
- Preprocessing (cached on disk per file and settings, :mod:`mae_medical.volume_cache`): RAS orientation,
  resampling to ``target_spacing`` (x, y, z mm; default 1.5 x 1.5 x 2.0), an ``intensity`` preset (CT
  windows ``abdomen`` -175..250 HU, ``lung``, ``bone``, ``wide`` -1000..1000, ``[low, high]``, or ``mr``
  percentiles) scaled to [0, 1], and a crop to the foreground. The model sees ``(1, Z, Y, X)`` with the
  spacing ``(z, y, x)`` in ``meta["spacing"]``.
- Training: ``crops_per_volume`` references per volume, each a seeded random ``model.img_size``^3 crop
  with random flips; volumes smaller than the crop are padded and the padding is invalid (its tokens are
  forced into the masked set and never scored). 16^3 cubes, 3D sin-cos codes scaled by the spacing, mask
  0.75 (random, or ``mask.strategy=consistent mask.axis=z`` for the same in-plane mask on every slab).
- Evaluation: ``segmentation`` (UNETR-style decoder, Dice) and the per-volume probes.

Values are already in [0, 1]: there are no per-archive statistics to compute (:meth:`compute_stats`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.data.pixel_limit import check_pixel_count
from mae_domains.files import find_files
from mae_domains.log_names import LogLines, printable
from mae_domains.grid_adapter import GridAdapter
from mae_domains.models.embeddings.cube3d import CubePatchEmbed3D
from mae_medical.dicom_header import cached_header
from mae_medical.dicom_series import SeriesFiles, group_series, log_series, read_series
from mae_medical.nifti import is_nifti, nifti_header_problem, read_nifti
from mae_medical.volume_cache import VolumeCache, cache_key
from mae_medical.volume_phantoms import abdomen_phantom
from mae_medical.volume_rendering import save_orthogonal_figure, save_volume_preview
from mae_medical.volume_transforms import crop_box, crop_or_pad, foreground_box, intensity_to_unit, random_flips
from mae_medical.volumes import DEFAULT_SPACING_XYZ, Volume, canonical_array, label_on_image_grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumeRef:
    """One volume: a NIfTI file or a DICOM series (``files``), and which of its training crops this is."""

    source: str
    files: tuple[str, ...]
    kind: str  # "nifti" or "dicom"
    uid: str = ""
    crop: int = 0

    def __str__(self) -> str:
        return self.source


def crop_position(meta: dict[str, Any], origin: Sequence[int], size: int, shape: Sequence[int]) -> dict[str, list]:
    """Where a crop lies: ``voxel_box`` ``[z0, y0, x0, z1, y1, x1]`` (end exclusive; the part inside the volume)
    on the canonical resampled grid (before the foreground crop, whose offset ``crop_start`` is added), and
    ``world_box`` ``[r0, a0, s0, r1, a1, s1]``, the RAS millimetres of its first and last voxel centres."""
    offset = np.asarray(meta.get("crop_start") or [0, 0, 0])
    first = np.maximum(np.asarray(origin), 0)
    last = np.minimum(np.asarray(origin) + size, np.asarray(shape))  # exclusive
    box = [int(v) for v in np.concatenate([first + offset, last + offset])]
    out: dict[str, list] = {"voxel_box": box}
    if meta.get("affine") is not None:  # of the (X, Y, Z) array: voxel (x, y, z) -> RAS mm
        affine = np.asarray(meta["affine"], np.float64)
        corners = np.array([[box[2], box[1], box[0], 1.0], [box[5] - 1, box[4] - 1, box[3] - 1, 1.0]])
        out["world_box"] = [round(float(v), 3) for v in (corners @ affine.T)[:, :3].ravel()]
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("MAE_DOMAINS_CACHE", Path.home() / ".cache" / "mae_domains")) / "volumes"


class CTAdapter(GridAdapter):
    name = "medical.ct"
    summary = "CT/MR volumes (NIfTI, DICOM series): 3D MAE on 16^3 cubes of 96^3 crops, mask 0.75."
    value_range = "0-1: the intensity window (data.options.intensity, e.g. abdomen -175..250 HU) scaled to 0-1"
    method_papers = ('Chen et al.: "Masked Image Modeling Advances 3D Medical Image Analysis", WACV 2023 '
                     '(cvlab-stonybrook/SelfMedMAE)',)
    default_mask_ratio = 0.75
    mask_axis = "z"
    file_patterns = ("*.nii", "*.nii.gz", "<DICOM series folders>")
    evaluation_protocols: ClassVar[tuple[str, ...]] = ("segmentation", "volume_probe")
    option_defaults: ClassVar[dict[str, Any]] = {
        "intensity": "abdomen",
        "mr_percentiles": [0.5, 99.5],
        "target_spacing": list(DEFAULT_SPACING_XYZ),
        "foreground_crop": True,
        "foreground_margin": 2,
        "crops_per_volume": 4,
        "flip": True,
        "irregular_slices": "reject",
        "cache_dir": "auto",
        "reference_spacing": None,
    }
    option_help: ClassVar[dict[str, str]] = {
        "intensity": "CT window to [0, 1]: abdomen (-175..250 HU), lung, bone, wide (-1000..1000), [low, high] in HU, "
                     "or mr (per-volume percentiles)",
        "mr_percentiles": "the percentiles scaled to 0 and 1 with intensity: mr",
        "target_spacing": "voxel spacing (x, y, z mm) every volume is resampled to",
        "foreground_crop": "crop each volume to its foreground (voxels above the window's minimum)",
        "foreground_margin": "voxels kept around the foreground box",
        "crops_per_volume": "random model.img_size^3 training crops drawn per volume and epoch",
        "flip": "random flips along each axis in training",
        "irregular_slices": "a DICOM series with uneven slice gaps: reject it, or interpolate onto even slices",
        "cache_dir": "where resampled volumes are cached (auto: ~/.cache/mae_domains/volumes or "
                     "$MAE_DOMAINS_CACHE; none: no cache)",
        "reference_spacing": "spacing (x, y, z mm) at which position codes advance one step per patch (null: "
                             "target_spacing)",
    }
    test_overrides = ("data.options.cache_dir=none",)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o["irregular_slices"] not in ("reject", "interpolate"):
            raise ValueError(f"adapter {self.name}: irregular_slices must be reject or interpolate")
        if int(o["crops_per_volume"]) < 1:
            raise ValueError(f"adapter {self.name}: crops_per_volume must be >= 1")
        intensity_to_unit(np.zeros((2, 2, 2), np.float32), o["intensity"])  # validates the preset
        cache = o["cache_dir"]
        self.cache = None if cache in (None, "none", False) else VolumeCache(default_cache_dir() if cache == "auto"
                                                                              else cache)

    def bind(self, config: Any) -> "CTAdapter":
        config.model.in_chans = 1
        super().bind(config)
        return self

    # ----- discovery -------------------------------------------------------------------------------
    def discover(self, sources: Sequence[str | os.PathLike]) -> list[VolumeRef]:
        """One reference per crop of every NIfTI file and DICOM series in ``sources`` (files, folders,
        globs); NIfTI files whose header is unreadable or 2D and DICOM files that are not slices of a volume
        are logged and listed in ``self.excluded`` (problems found only when decoding are skipped and listed
        by the data loader)."""
        files = find_files(sources, ("*",))
        volumes, self.excluded = self.volume_refs(files)
        if not volumes:
            left_out = "; ".join(f"{p}: {why}" for p, why in self.excluded[:3])
            raise FileNotFoundError(f"no NIfTI volume or DICOM series in {', '.join(map(str, sources))}"
                                    + (f" (left out: {left_out})" if left_out else ""))
        n = int(self.options["crops_per_volume"])
        return [VolumeRef(v.source, v.files, v.kind, v.uid, c) for v in volumes for c in range(n)]

    def volume_refs(self, files: Sequence[str | os.PathLike]) -> tuple[list[VolumeRef], list[tuple[str, str]]]:
        """``(volumes, excluded)``: one reference per NIfTI file and DICOM series, and the files left out
        with their reason (logged)."""
        series, excluded = group_series(f for f in files if not is_nifti(f))
        nifti = []
        for path in sorted(str(f) for f in files if is_nifti(f)):
            problem = nifti_header_problem(path)
            if problem:
                excluded.append((path, problem))
            else:
                nifti.append(path)
        log_series(series)
        if excluded:
            log.warning("%d file(s) left out:\n%s", len(excluded),
                        LogLines("\n".join(f"  {printable(p)}: {printable(why)}" for p, why in excluded[:10])))
        return ([VolumeRef(p, (p,), "nifti") for p in nifti] +
                [VolumeRef(s.name, s.files, "dicom", s.uid) for s in series]), excluded

    def as_ref(self, ref: Any) -> VolumeRef:
        """A reference from a :class:`VolumeRef`, a NIfTI path or a folder holding one DICOM series."""
        if isinstance(ref, VolumeRef):
            return ref
        path = Path(str(ref))
        if is_nifti(path):
            return VolumeRef(str(path), (str(path),), "nifti")
        if path.is_dir():
            refs, _ = self.volume_refs(find_files([path], ("*",)))
            if len(refs) != 1:
                raise BadSampleError(str(path), f"holds {len(refs)} volumes; name one NIfTI file or one series")
            return refs[0]
        series, _ = group_series([path])
        if series:
            raise BadSampleError(str(path), "is a single DICOM slice: a 2D image, not a volume for the CT/MR adapter")
        raise BadSampleError(str(path), "is neither a NIfTI file nor a folder with a DICOM series")

    def label_of(self, ref: Any) -> Any:
        return Path(self.as_ref(ref).files[0]).parent.name

    # ----- reading ---------------------------------------------------------------------------------
    def load_volume(self, ref: VolumeRef) -> Volume:
        """The volume of a NIfTI file or a DICOM series, after checking its size against
        ``data.max_pixels`` from the headers (before any voxel is decoded)."""
        limit = self.config.data.max_pixels
        if ref.kind == "nifti":
            import nibabel

            check_pixel_count(ref.files[0], nibabel.load(ref.files[0]).header.get_data_shape(), limit)
            return read_nifti(ref.files[0])
        header = cached_header(ref.files[0])
        check_pixel_count(ref.source, (len(ref.files), int(getattr(header, "Rows", 0) or 0),
                                       int(getattr(header, "Columns", 0) or 0)), limit)
        return read_series(SeriesFiles(ref.uid, ref.files, ""), self.options["irregular_slices"])

    def settings(self) -> dict[str, Any]:
        """The preprocessing settings the cache key includes."""
        o = self.options
        return {k: o[k] for k in ("intensity", "mr_percentiles", "target_spacing", "foreground_crop",
                                  "foreground_margin", "irregular_slices")}

    def preprocess(self, volume: Volume) -> tuple[np.ndarray, dict[str, Any]]:
        """Canonical, resampled, scaled and foreground-cropped ``(Z, Y, X)`` array and its metadata."""
        o = self.options
        array, spacing, affine = canonical_array(volume, o["target_spacing"])
        array = intensity_to_unit(array, o["intensity"], o["mr_percentiles"])
        start, end = [0, 0, 0], list(array.shape)
        if o["foreground_crop"]:
            start, end = foreground_box(array, 0.0, int(o["foreground_margin"]))
            array = np.ascontiguousarray(crop_box(array, start, end))
        meta = {"spacing": list(spacing), "crop_start": start, "crop_end": end, "affine": affine.tolist(),
                **{k: v for k, v in volume.meta.items() if isinstance(v, (str, int, float, list))}}
        return array, meta

    def read(self, ref: Any) -> Sample:
        """The preprocessed volume ``(1, Z, Y, X)`` in [0, 1], from the cache when it is there."""
        ref = self.as_ref(ref)
        key = cache_key(ref.files, self.settings()) if self.cache is not None else ""
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            array, meta = self.preprocess(self.load_volume(ref))
            if self.cache is not None:
                self.cache.put(key, array, meta)
        else:
            array, meta = hit
        meta = {**meta, "source": ref.source, "sample_id": f"{ref.source}#crop{ref.crop}", "crop_index": ref.crop}
        return Sample(np.asarray(array, np.float32)[None], meta)

    def read_labelled(self, image: Any, label: Any, stats: NormStats | None = None) -> tuple[Sample, np.ndarray]:
        """An image volume and its label volume, preprocessed alike: the label is brought to the image's grid
        (reoriented first, resampled by nearest neighbour only where the grids differ; a label that does not
        cover the image is a :class:`BadSampleError` naming both), then resampled by nearest neighbour to
        the target spacing and cropped to the image's foreground box; the image normalized with ``stats``
        as ``transform`` does."""
        image_ref, label_ref = self.as_ref(image), self.as_ref(label)
        volume = self.load_volume(image_ref)
        labels = label_on_image_grid(volume, self.load_volume(label_ref))
        array, meta = self.preprocess(volume)
        label_array, _, _ = canonical_array(labels, self.options["target_spacing"], mode="nearest")
        label_array = crop_box(label_array, meta["crop_start"], meta["crop_end"])
        meta.update(source=image_ref.source, sample_id=image_ref.source, label_source=label_ref.source)
        pixels = array[None].astype(np.float32)
        return Sample(pixels if stats is None else stats.normalize(pixels), meta), \
            np.ascontiguousarray(label_array).astype(np.int64)

    def compute_stats(self, refs: Sequence[Any], max_samples: int = 256, seed: int = 0) -> NormStats:
        """Identity statistics: intensities are already scaled to [0, 1] by the window or percentiles."""
        return NormStats([0.0], [1.0], len(refs), ["intensity"])

    # ----- augmentation ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.config.model.img_size)

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        """A seeded random crop (+ flips) for training; for evaluation the centre crop as crop 0 and, for
        crops 1.. of ``crops_per_volume``, crops at positions fixed by their index (the same in every run),
        so the rows of one volume are different crops. Padding is invalid. Where the crop lies is kept
        (:func:`crop_position`)."""
        index = int(sample.meta.get("crop_index") or 0)
        rng = np.random.default_rng(seed % (2**63)) if train else (
            np.random.default_rng([index, 0xC7]) if index else None)
        volume = sample.image[0]
        crop, valid, origin = crop_or_pad(volume, self.size, rng, sample.valid)
        if train and self.options["flip"]:
            crop, valid = random_flips(rng, crop, valid)
        crop = np.where(valid, crop, 0.0).astype(np.float32)[None]
        if stats is not None:
            crop = stats.normalize(crop)
        meta = {**sample.meta, "crop_origin": origin, **crop_position(sample.meta, origin, self.size, volume.shape)}
        return Sample(crop, meta, valid, sample.label)

    # ----- model -----------------------------------------------------------------------------------
    def reference_spacing(self) -> tuple[float, float, float]:
        ref = self.options["reference_spacing"] or self.options["target_spacing"] or DEFAULT_SPACING_XYZ
        return (float(ref[2]), float(ref[1]), float(ref[0]))

    def build_embedding(self, model: Any) -> CubePatchEmbed3D:
        """16^3 (``model.patch_size``) cubes, 3D sin-cos codes scaled by spacing / reference spacing."""
        return CubePatchEmbed3D(1, self.embed_dim(model), int(model.patch_size),
                                reference_spacing=self.reference_spacing())

    def batch_meta(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Voxel spacing ``(B, 3)`` mm, ordered (z, y, x)."""
        metas = batch.get("meta") or []
        if metas and all(m.get("spacing") is not None for m in metas):
            return {"spacing": torch.tensor([list(m["spacing"]) for m in metas], dtype=torch.float64, device=device)}
        return {}

    # ----- figures and samples ---------------------------------------------------------------------
    def render_reconstruction(self, model: Any, batch: dict[str, Any], output: Any, path: Path) -> Path:
        """Axial, coronal and sagittal mid-slices of input, masked input and reconstruction."""
        grid_batch = self.grid_batch(batch, output.pred.device)
        recon, hidden = model.reconstruct_pixels(grid_batch, output)
        valid = batch.get("valid")
        return save_orthogonal_figure(grid_batch.images.float().cpu().numpy(), recon.float().cpu().numpy(),
                                      hidden.cpu().numpy(), path,
                                      None if valid is None else valid.cpu().numpy(), title=self.name)

    def render_sample(self, sample: Sample, path: Path) -> Path:
        """The volume's axial, coronal and sagittal middle slices as a radiologist views them (anterior up
        and the patient's right on the left in axial slices; directions labelled), padding magenta."""
        spacing = sample.meta.get("spacing")
        detail = f" ({' x '.join(f'{v:g}' for v in spacing)} mm, z y x)" if spacing else ""
        return save_volume_preview(sample.image[0], path, sample.valid,
                                   title=f"{self.name}: {Path(sample.source).name}{detail}")

    def synthetic_sample(self, seed: int) -> Sample:
        """A 28 x 44 x 44 abdomen phantom at 2.0 x 1.5 x 1.5 mm (shorter than a 32^3 crop along z, so the
        padding path is exercised), windowed to [0, 1]."""
        hu, _ = abdomen_phantom(seed, (28, 44, 44))
        image = intensity_to_unit(hu, self.options["intensity"], self.options["mr_percentiles"])
        return Sample(image[None], {"source": f"synthetic:ct-{seed}", "sample_id": f"synthetic-ct-{seed}",
                                    "spacing": [2.0, 1.5, 1.5]})
