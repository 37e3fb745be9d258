"""Medical readers check the size a file announces against data.max_pixels before decoding it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from mae_domains.config import load_config
from mae_domains.data.sample import BadSampleError
from mae_domains.registry import get_adapter
from tests.medical.dicom_files import slope_intercept


def bound(name: str, limit: int):
    adapter = get_adapter(name, {"cache_dir": "none"} if name == "medical.ct" else None)
    return adapter.bind(load_config(None, [f"adapter={name}", f"data.max_pixels={limit}"]))


def test_xray_dicom_and_png_over_the_limit_are_skipped_before_decoding(tmp_path):
    path, _ = slope_intercept(tmp_path / "slope.dcm")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "film.png")
    small = bound("medical.xray", 10)
    for file in (path, tmp_path / "film.png"):
        with pytest.raises(BadSampleError, match="data.max_pixels=10;"):
            small.read(file)
    assert bound("medical.xray", 10**6).read(tmp_path / "film.png").image.shape == (1, 40, 50)


def test_ct_volume_over_the_limit_is_skipped_before_decoding(tmp_path):
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10), np.int16), np.eye(4)), str(path))
    adapter = bound("medical.ct", 1000)
    ref = adapter.discover([path])[0]
    with pytest.raises(BadSampleError, match=r"4,000 values \(20 x 20 x 10\).*data.max_pixels=1,000"):
        adapter.read(ref)
