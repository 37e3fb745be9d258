"""2D label masks of segmentation pairs: TIFF (tifffile, OME axes of one) and PNG (PIL) ids, refused variants."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from mae_domains.data.label_masks import check_mask_grid, read_label_mask
from mae_domains.data.sample import BadSampleError


def ids(shape=(6, 5), top: int = 300) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) * 7 % (top + 1)).astype(np.int64)


def test_instance_ids_of_an_ome_tiff_with_singleton_axes_keep_their_values(tmp_path):
    expected = ids()
    tifffile.imwrite(tmp_path / "m.ome.tif", expected.astype(np.uint16)[None, None], ome=True,
                     metadata={"axes": "CZYX"})
    out = read_label_mask(tmp_path / "m.ome.tif")
    assert out.dtype == np.int64 and out.shape == (6, 5)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("mode", ["L", "I;16", "P"])
def test_png_ids_in_8_bit_16_bit_and_palette_images(tmp_path, mode):
    expected = ids(top=255 if mode != "I;16" else 300)
    if mode == "I;16":
        Image.fromarray(expected.astype(np.uint16)).save(tmp_path / "m.png")
    else:
        image = Image.fromarray(expected.astype(np.uint8), mode="L")
        if mode == "P":
            image = image.convert("P")  # the palette indices are the ids
            image.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
        image.save(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as check:
        assert check.mode.startswith(mode[:1])
    np.testing.assert_array_equal(read_label_mask(tmp_path / "m.png"), expected)


def test_colour_float_negative_and_missing_masks_are_bad_pairs_named_by_file(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(BadSampleError, match=r"rgb\.png: a label mask must be one channel of ids, got PIL mode RGB"):
        read_label_mask(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(BadSampleError, match=r"float\.tif: a label mask must hold integer ids, got float32"):
        read_label_mask(tmp_path / "float.tif")
    tifffile.imwrite(tmp_path / "neg.tif", np.full((4, 4), -2, np.int16))
    with pytest.raises(BadSampleError, match=r"neg\.tif: a label mask must hold ids >= 0, found -2"):
        read_label_mask(tmp_path / "neg.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(BadSampleError, match=r"stack\.tif: a label mask must be 2D .* \(2, 4, 4\)"):
        read_label_mask(tmp_path / "stack.tif")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadSampleError, match=r"broken\.png: cannot read the label mask"):
        read_label_mask(tmp_path / "broken.png")
    with pytest.raises(BadSampleError, match=r"none\.png: label mask not found"):
        read_label_mask(tmp_path / "none.png")


def test_a_mask_on_another_grid_names_both_files():
    check_mask_grid(np.zeros((4, 5)), (1, 4, 5), "img.tif", "m.tif")
    with pytest.raises(BadSampleError, match=r"^m\.png: label grid \(4, 6\) differs from the image grid \(4, 5\) of img\.png$"):
        check_mask_grid(np.zeros((4, 6)), (1, 4, 5), "img.png", "m.png")
