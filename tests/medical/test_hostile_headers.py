"""Headers that declare what is not there: refused from the header alone, in one line naming the file and
the field, before anything is allocated or enumerated."""

from __future__ import annotations

import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mae_domains.cli import main

NIFTI1_DIM_OFFSET = 40  # int16 dim[8] of the 348-byte NIfTI-1 header


def test_nifti_with_a_negative_dimension_names_the_file_and_header_field(tmp_path, capsys):
    path = tmp_path / "scans" / "vol.nii"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.int16), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<h", data, NIFTI1_DIM_OFFSET + 2 * 2, -8)  # dim[2] = -8
    path.write_bytes(bytes(data))
    assert main(["inspect", "--adapter", "medical.ct", "--out", str(tmp_path / "out"), str(path.parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{path}: header field dim[2] is -8: a negative dimension" in err
    assert "no installed adapter reads NIfTI" not in err


def one_frame_declaring(path, frames: int, compressed: bool = False):
    """A 64 x 64 16-bit radiograph holding one frame whose header declares ``frames``."""
    from tests.medical import dicom_files as F

    if compressed:
        path, _ = F.rle_cine(path, frames=1)
        from pydicom import dcmread

        ds = dcmread(path)
        ds.NumberOfFrames = frames
        ds.save_as(path)
        return path
    ds = F.base_dataset(64, 64, frames=frames)
    ds.PixelData = F.ramp(64, 64, 0, 4000).astype(np.uint16).tobytes()
    return F.write(ds, path)


@pytest.mark.slow  # a fresh CLI process (about 20 s to import), with a deadline
def test_dicom_declaring_1e8_frames_is_refused_from_its_header_within_a_deadline(tmp_path):
    """Discovery used to make one sample per declared frame (2.4 GB, no message): now one line, at once."""
    import os
    import subprocess
    import sys

    path = one_frame_declaring(tmp_path / "scans" / "cine.dcm", 100_000_000)
    done = subprocess.run([sys.executable, "-m", "mae_domains.cli", "inspect", "--adapter", "medical.xray",
                           "--out", str(tmp_path / "out"), str(path)], capture_output=True, text=True, timeout=90,
                          env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in done.stderr
    assert (f"{path}: header field NumberOfFrames declares 100,000,000 frames (64 x 64 x 1 values of 16 bits per "
            "frame: 819,200,000,000 bytes), but the file holds only") in last


def test_declared_frames_are_checked_against_the_bytes_present_and_max_pixels(tmp_path):
    from mae_medical import XrayAdapter
    from mae_medical.dicom_header import cached_header, declared_size_problem

    honest = one_frame_declaring(tmp_path / "honest.dcm", 1)
    two = one_frame_declaring(tmp_path / "two.dcm", 2)  # one frame's bytes short
    rle = one_frame_declaring(tmp_path / "rle.dcm", 10**9, compressed=True)
    assert declared_size_problem(honest, cached_header(honest)) is None
    assert "declares 2 frames" in declared_size_problem(two, cached_header(two))
    assert "declares 1,000,000,000 frames (at least 8 bytes per compressed frame" in declared_size_problem(
        rle, cached_header(rle))
    adapter = XrayAdapter()
    adapter.config.data.max_pixels = 64 * 64 - 1
    with pytest.raises(FileNotFoundError, match=f"{honest}: a frame of 64 x 64 x 1 = 4,096 values is more than "
                                                 "data.max_pixels=4,095"):
        adapter.discover([honest])
    adapter.config.data.max_pixels = 64 * 64
    assert [r.path for r in adapter.discover([honest])] == [str(honest)]
    assert sorted(Path(p).name for p, _ in adapter.excluded) == []
    adapter.discover([tmp_path])
    assert sorted(Path(p).name for p, _ in adapter.excluded) == ["rle.dcm", "two.dcm"]


def test_nifti_decodes_into_one_float32_copy_with_scaling_applied(tmp_path, monkeypatch):
    """Peak memory of a decode is the float32 volume plus one slab, not the stored array beside it (a 250 KiB
    gzip of 512^3 peaked at 4.5 GB); the values are nibabel's scaled ones, in every slab."""
    import tracemalloc

    from mae_medical import nifti

    stored = np.random.default_rng(0).integers(-1000, 3000, (64, 48, 200)).astype(np.int16)
    image = nib.Nifti1Image(stored, np.diag([0.7, 0.7, 1.2, 1.0]))
    image.header.set_slope_inter(0.5, -100.0)
    path = tmp_path / "ct.nii.gz"
    nib.save(image, path)
    expected = nib.load(path).get_fdata(dtype=np.float32)
    monkeypatch.setattr(nifti, "SLAB_BYTES", 64 * 1024)
    tracemalloc.start()
    volume = nifti.read_nifti(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(volume.data, expected)
    assert volume.data.dtype == np.float32 and volume.data.flags.c_contiguous
    float_bytes = stored.size * 4
    assert peak < float_bytes + stored.size * 2 // 2, (peak, float_bytes)  # not the stored int16 array beside it
    nib.save(nib.Nifti1Image(stored[..., None], image.affine), tmp_path / "one_frame.nii.gz")
    tracemalloc.start()
    one_frame = nifti.read_nifti(tmp_path / "one_frame.nii.gz")  # 4D with one frame: slabs along z still
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(one_frame.data, stored.astype(np.float32))
    assert peak < float_bytes + stored.size * 2 // 2, (peak, float_bytes)
