"""Small microscopy archives written with tifffile and zarr, with known pixels, names and pixel sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
import zarr

from mae_microscopy.synthetic import synthetic_field

PAINTING = ("DNA", "RNA", "ER", "AGP", "Mito")


def ramp(shape: Sequence[int], dtype: str = "uint16", offset: int = 0) -> np.ndarray:
    """Distinct known values: ``offset + arange`` reshaped, in ``dtype`` (wrapping for 8 bits)."""
    values = np.arange(int(np.prod(shape)), dtype=np.int64) + offset
    if np.dtype(dtype).kind == "f":
        return (values / 7.0).astype(dtype).reshape(shape)
    return (values % (np.iinfo(dtype).max + 1)).astype(dtype).reshape(shape)


def write_ome_tiff(path: Path, data: np.ndarray, names: Sequence[str], pixel_size: float = 0.65,
                   unit: str = "µm", z_step: float | None = None, axes: str = "CYX", tile: int | None = None) -> Path:
    """An OME-TIFF with channel names and physical pixel size (and z step)."""
    metadata = {"axes": axes, "Channel": {"Name": list(names)}, "PhysicalSizeX": pixel_size,
                "PhysicalSizeXUnit": unit, "PhysicalSizeY": pixel_size, "PhysicalSizeYUnit": unit}
    if z_step is not None:
        metadata["PhysicalSizeZ"] = z_step
    kwargs = {"tile": (tile, tile)} if tile else {}
    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata=metadata, **kwargs)
    return path


def write_imagej(path: Path, data: np.ndarray, labels: Sequence[str], pixel_size: float, z_step: float) -> Path:
    """An ImageJ hyperstack ``TZCYX`` with per-plane labels, resolution and spacing in microns."""
    t, z, c = data.shape[:3]
    plane_labels = [labels[i % c] for i in range(t * z * c)]
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / pixel_size, 1 / pixel_size),
                     metadata={"axes": "TZCYX", "unit": "micron", "spacing": z_step, "Labels": plane_labels})
    return path


def write_channel_plate(folder: Path, wells: Sequence[tuple[int, int]], fields: int, channels: int, size: int = 48,
                        planes: int = 1, dtype: str = "uint16") -> dict[tuple[int, int, int, int, int], np.ndarray]:
    """Harmony-style per-channel files ``r01c02f01p01-ch1sk1fk1fl1.tiff``; returns every written plane by
    (row, col, field, plane, channel)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    k = 0
    for row, col in wells:
        for f in range(1, fields + 1):
            for p in range(1, planes + 1):
                for ch in range(1, channels + 1):
                    plane = ramp((size, size), dtype, offset=1000 * k)
                    k += 1
                    name = f"r{row:02d}c{col:02d}f{f:02d}p{p:02d}-ch{ch}sk1fk1fl1.tiff"
                    tifffile.imwrite(folder / name, plane)
                    written[(row, col, f, p, ch)] = plane
    return written


def write_ome_zarr(path: Path, data: np.ndarray, names: Sequence[str], pixel_size: float = 0.5,
                   version: str = "0.4") -> Path:
    """An OME-Zarr image ``(C, Y, X)`` with two levels (full and 2x downsampled by striding) and omero
    channel labels; NGFF 0.4 (Zarr v2) or 0.5 (Zarr v3, attributes under ``ome``)."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    root.create_array("0", data=data, chunks=(1, 16, 16))
    root.create_array("1", data=np.ascontiguousarray(data[:, ::2, ::2]), chunks=(1, 16, 16))
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, pixel_size * 2**level, pixel_size * 2**level]}]} for level in (0, 1)]
    multiscales = [{"version": version, "axes": axes, "datasets": datasets}]
    omero = {"channels": [{"label": n} for n in names]}
    if version == "0.4":
        root.attrs["multiscales"] = multiscales
        root.attrs["omero"] = omero
    else:
        root.attrs["ome"] = {"version": version, "multiscales": multiscales, "omero": omero}
    return path


def write_cells_ome(path: Path, names: Sequence[str], seed: int, size: int = 64, **kwargs) -> np.ndarray:
    """An OME-TIFF of a synthetic Cell Painting field; returns its pixels."""
    data = synthetic_field(seed, names, size, size, cells=5, **kwargs)
    write_ome_tiff(path, data, names, axes="CZYX" if data.ndim == 4 else "CYX")
    return data
