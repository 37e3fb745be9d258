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


def check_same_grid(image: Volume, label: Volume) -> None:
    """Image and label voxels must lie on the same grid (shape and affine within 1 micrometre)."""
    if image.data.shape != label.data.shape:
        raise BadSampleError(label.source, f"label grid {tuple(label.data.shape)} differs from the image grid "
                                           f"{tuple(image.data.shape)} of {image.source}")
    diff = float(np.abs(np.asarray(image.affine) - np.asarray(label.affine)).max())
    if diff > AFFINE_TOLERANCE_MM:
        raise BadSampleError(label.source, f"label affine differs from the affine of {image.source} by up to "
                                           f"{diff:.4g} mm: the label is not on the image's grid")
