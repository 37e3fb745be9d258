"""A window read never decodes more than data.max_pixels: a single-strip plane is refused before decoding,
the same image stored in tiles is read window by window."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mae_domains.config import load_config
from mae_domains.data.sample import BadSampleError
from mae_domains.registry import get_adapter


def adapter_with_limit(limit: int):
    adapter = get_adapter("microscopy.channel_agnostic")
    return adapter.bind(load_config(None, ["adapter=microscopy.channel_agnostic", "model.img_size=32",
                                           f"data.max_pixels={limit}"]))


def test_single_strip_plane_is_refused_tiled_plane_is_read(tmp_path):
    planes = np.random.default_rng(0).integers(1, 4000, (2, 512, 512), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "strip.tif", planes, photometric="minisblack", rowsperstrip=512)
    tifffile.imwrite(tmp_path / "tiled.tif", planes, photometric="minisblack", tile=(64, 64))
    adapter = adapter_with_limit(20_000)  # 2 channels x one 64x64 tile = 8192; the whole strip is 524,288
    strip = next(r for r in adapter.discover([tmp_path / "strip.tif"]))
    with pytest.raises(BadSampleError, match="strip.tif: reading this window .* data.max_pixels=20,000"):
        adapter.read(strip)
    tiled = next(r for r in adapter.discover([tmp_path / "tiled.tif"]))
    sample = adapter.read(tiled)
    assert sample.image.shape[-2:] == (32, 32) and sample.image.shape[0] == 2
