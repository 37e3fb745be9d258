"""NIfTI volumes through nibabel, decoded straight into one float32 array.

Peak memory: a volume of N voxels (at most ``data.max_pixels``) is decoded into one float32 array of
4 x N bytes, slab by slab along the last axis, so the stored values (int16, uint8 ...) are never held
whole beside it (``get_fdata`` would hold both, plus its cache). The CT/MR preprocessing then holds a few
float32 arrays of that size at once (reorientation, resampling, intensity scaling; see the README).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from mae_domains.data.sample import BadSampleError
from mae_medical.volumes import Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_header_problem(path: str | Path) -> str | None:
    """Why a NIfTI file cannot be a volume, from its header alone (None when it looks fine)."""
    try:
        header = nib.load(str(path)).header
    except Exception as err:
        return f"unreadable NIfTI header ({type(err).__name__}: {err})"
    dims = [int(d) for d in header["dim"]]
    negative = [i for i in range(1, min(max(dims[0], 0), 7) + 1) if dims[i] < 0]
    if negative:
        return f"header field dim[{negative[0]}] is {dims[negative[0]]}: a negative dimension (dim = {dims})"
    shape = header.get_data_shape()
    spatial = tuple(shape[:3]) + (1,) * max(0, 3 - len(shape))
    if min(spatial) < 2:
        return (f"is not a 3D volume (voxel shape {tuple(shape)}); the CT/MR adapter needs at least 2 voxels "
                "along each of 3 axes")
    return None


SLAB_BYTES = 32 * 2**20  # stored values decoded at a time


def decode_float32(proxy) -> np.ndarray:
    """The scaled values of a nibabel array proxy in one C-ordered float32 array, decoded slab by slab
    along the last axis longer than 1 (contiguous in the file: NIfTI is stored in Fortran order, and a
    trailing axis of length 1, a 4D file with one frame, changes nothing)."""
    shape = tuple(int(s) for s in proxy.shape)
    out = np.empty(shape, np.float32)
    if not shape or min(shape) == 0:
        return out
    axis = max((i for i, n in enumerate(shape) if n > 1), default=len(shape) - 1)
    per_slice = int(np.prod(shape[:axis])) * np.dtype(proxy.dtype).itemsize
    step = max(1, SLAB_BYTES // max(per_slice, 1))
    for start in range(0, shape[axis], step):
        slab = (slice(None),) * axis + (slice(start, start + step),)
        out[slab] = proxy[slab]
    return out


def read_nifti(path: str | Path) -> Volume:
    """The volume of a ``.nii``/``.nii.gz`` file (a 4D file with one frame is accepted); scaling
    (``scl_slope``/``scl_inter``) is applied by nibabel. Bad files raise :class:`BadSampleError`."""
    source = str(path)
    try:
        image = nib.load(source, keep_file_open=True)  # slabs read in order: a gzip stream is inflated once
        data = decode_float32(image.dataobj)
    except Exception as err:  # truncated gzip, short data block, not NIfTI at all
        raise BadSampleError(source, f"unreadable NIfTI ({type(err).__name__}: {err})") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise BadSampleError(source, f"is a 4D series {data.shape}; give one volume per file")
    header = image.header
    meta = {"format": "nifti", "xyzt_units": header.get_xyzt_units()[0]}
    volume = Volume(data, np.asarray(image.affine, np.float64), source, meta)
    volume.check_3d()
    return volume
