"""Headers that declare what is not there: refused from the header alone, in one line naming the file and
the field, before anything is allocated or enumerated."""

from __future__ import annotations

import struct

import nibabel as nib
import numpy as np

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
