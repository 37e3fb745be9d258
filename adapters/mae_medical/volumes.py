"""A volume as read (voxels + affine to RAS millimetres) and its canonical form for the model.

Readers (:mod:`mae_medical.nifti`, :mod:`mae_medical.dicom_series`) return a :class:`Volume`: a float32
voxel array indexed ``(i, j, k)`` and the 4x4 affine from those indices to RAS+ world millimetres (the
NIfTI convention). :func:`canonical_array` turns it into what the model sees: axes reoriented to RAS
(MONAI ``Orientation``), resampled to the target voxel size (MONAI ``Spacing``, trilinear for images,
nearest neighbour for labels) and transposed to ``(z, y, x)`` = (S, A, R) with the spacing in the same
order. A DICOM series and its NIfTI conversion thus give the same array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Spacing

from mae_domains.data.sample import BadSampleError

DEFAULT_SPACING_XYZ = (1.5, 1.5, 2.0)  # mm, (R, A, S): SelfMedMAE / MONAI BTCV recipe
AFFINE_TOLERANCE_MM = 1e-3


@dataclass
class Volume:
    """Voxels ``(I, J, K)`` float32, affine voxel -> RAS+ mm, the source named in messages, and metadata."""

    data: np.ndarray
    affine: np.ndarray
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def check_3d(self) -> None:
        """Raise :class:`BadSampleError` for anything that is not a real volume (2D images, 1-slice stacks)."""
        shape = self.data.shape
        if self.data.ndim != 3 or min(shape) < 2:
            raise BadSampleError(self.source, f"is not a 3D volume (voxel shape {tuple(shape)}); the CT/MR "
                                              "adapter needs at least 2 voxels along each of 3 axes")


def canonical_array(volume: Volume, spacing_xyz: Sequence[float] | None = DEFAULT_SPACING_XYZ,
                    mode: str = "bilinear") -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """``(array (Z, Y, X) float32, spacing (z, y, x) mm, RAS affine of the (X, Y, Z) array)``.

    ``spacing_xyz`` None keeps the native voxel size; ``mode`` ``bilinear`` (images) or ``nearest`` (labels).
    """
    volume.check_3d()
    tensor = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume.data, np.float32))[None],
                        affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    tensor = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(tensor)
    if spacing_xyz is not None:
        tensor = Spacing(pixdim=tuple(float(s) for s in spacing_xyz), mode=mode, padding_mode="border")(tensor)
    affine = tensor.affine.detach().cpu().numpy().astype(np.float64)
    array = tensor.detach().cpu().numpy()[0].astype(np.float32)
    if mode == "nearest":
        array = np.rint(array).astype(np.float32)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return (np.ascontiguousarray(array.transpose(2, 1, 0)),
            (float(spacing[2]), float(spacing[1]), float(spacing[0])), affine)


def reoriented_like(label: Volume, image: Volume) -> Volume:
    """``label`` with its axes permuted and flipped to the image's orientation (exact: no resampling), so a
    label map stored LAS lies on the grid of an image stored LPS when both cover the same voxels."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(label.affine), io_orientation(image.affine))
    data = np.ascontiguousarray(apply_orientation(label.data, transform))
    affine = np.asarray(label.affine, np.float64) @ inv_ornt_aff(transform, label.data.shape)
    return Volume(data, affine, label.source, label.meta)


def covers(label: Volume, image: Volume) -> bool:
    """Every image voxel centre lies inside the label's field of view (its voxels, half a voxel around)."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in image.data.shape], indexing="ij")).reshape(3, -1).T
    world = np.c_[corners, np.ones(len(corners))] @ np.asarray(image.affine).T
    ijk = (world @ np.linalg.inv(label.affine).T)[:, :3]
    return bool(np.all(ijk >= -0.5 - 1e-3) and np.all(ijk <= np.array(label.data.shape) - 0.5 + 1e-3))


def label_on_image_grid(image: Volume, label: Volume) -> Volume:
    """The label on the image's voxel grid: reoriented to the image's orientation first (exact), then, only
    where the grids still differ (shape or affine beyond 1 micrometre), resampled by nearest neighbour in
    world millimetres (logged). A label that does not cover the image raises :class:`BadSampleError`
    naming both files."""
    import logging

    image.check_3d()
    label.check_3d()
    label = reoriented_like(label, image)
    same_shape = image.data.shape == label.data.shape
    diff = float(np.abs(np.asarray(image.affine) - np.asarray(label.affine)).max())
    if same_shape and diff <= AFFINE_TOLERANCE_MM:
        return label
    if not covers(label, image):
        what = (f"label affine differs from the affine of {image.source} by up to {diff:.4g} mm" if same_shape else
                f"label grid {tuple(label.data.shape)} differs from the image grid {tuple(image.data.shape)} of "
                f"{image.source}")
        raise BadSampleError(label.source, f"{what}, and the label does not cover the image: it is not this "
                                           "image's label map")
    from nibabel import Nifti1Image
    from nibabel.processing import resample_from_to

    resampled = resample_from_to(Nifti1Image(label.data, label.affine), (image.data.shape, image.affine),
                                 order=0, mode="nearest")
    logging.getLogger(__name__).warning(
        "%s: label grid %s (spacing %s mm) differs from the grid %s of %s: label resampled by nearest neighbour",
        label.source, tuple(label.data.shape), ", ".join(f"{v:.3g}" for v in label.spacing),
        tuple(image.data.shape), image.source)
    return Volume(np.asarray(resampled.dataobj, np.float32), np.asarray(image.affine), label.source, label.meta)
