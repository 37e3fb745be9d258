"""The image adapter: reading 8/16-bit gray and colour files, bad files, conformance."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from mae_domains.data.sample import BadSampleError
from mae_domains.testing import assert_adapter_conforms
from mae_image import ImageAdapter, read_image


def test_reads_8bit_rgb_png_and_converts_to_gray(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    assert read_image(tmp_path / "red.png", 3)[0].max() == pytest.approx(1.0)
    gray = read_image(tmp_path / "red.png", 1)
    assert gray.shape == (1, 10, 12) and gray.max() == pytest.approx(0.299, abs=1e-6)


def test_reads_16bit_gray_png_and_tiff(tmp_path):
    data = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    Image.fromarray(data).save(tmp_path / "deep.png")
    tifffile.imwrite(tmp_path / "deep.tif", data)
    for name in ("deep.png", "deep.tif"):
        image = read_image(tmp_path / name, 1)
        assert image.shape == (1, 20, 30) and image.dtype == np.float32
        assert np.allclose(image[0], data / 65535.0, atol=1e-6)
    assert read_image(tmp_path / "deep.tif", 3).shape == (3, 20, 30)


def test_reads_planar_rgb_tiff_and_jpeg(tmp_path):
    planar = np.random.default_rng(0).integers(0, 255, (3, 16, 20), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    assert np.allclose(read_image(tmp_path / "planar.tif", 3), planar / 255.0, atol=1e-6)
    Image.fromarray(np.moveaxis(planar, 0, -1)).save(tmp_path / "photo.jpg")
    assert read_image(tmp_path / "photo.jpg", 3).shape == (3, 16, 20)


def test_corrupt_file_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(BadSampleError, match="broken.png: cannot decode"):
        read_image(tmp_path / "broken.png", 3)


def test_wrong_channel_count_is_named(tmp_path):
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((8, 8, 5), np.uint8), planarconfig="contig")
    with pytest.raises(BadSampleError, match="five.tif"):
        read_image(tmp_path / "five.tif", 3)


@pytest.mark.parametrize("planes, kwargs", [(3, {"photometric": "minisblack"}), (4, {})])
def test_a_stack_of_planes_is_refused_not_read_as_colour(tmp_path, planes, kwargs):
    """Three gray pages are not an RGB photograph, and a 4th plane is never dropped silently."""
    stack = np.arange(planes * 64, dtype=np.uint16).reshape(planes, 8, 8) + 1
    tifffile.imwrite(tmp_path / "stack.tif", stack, **kwargs)
    with pytest.raises(BadSampleError, match="stack.tif: .*microscopy.channel_agnostic"):
        read_image(tmp_path / "stack.tif", 3)


def test_alpha_is_dropped_only_when_it_carries_nothing(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    image = read_image(tmp_path / "opaque.png", 3)
    assert image.shape == (3, 8, 8) and np.allclose(image[0], 200 / 255) and np.all(image[1:] == 0)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "transparent.png")
    with pytest.raises(BadSampleError, match="transparent.png: .*not uniformly opaque"):
        read_image(tmp_path / "transparent.png", 3)


def test_planar_rgb_tiff_keeps_its_channel_order(tmp_path):
    planes = np.stack([np.full((8, 8), v, np.uint16) for v in (1000, 2000, 3000)])
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "planar.tif", 3)
    assert np.allclose(image[:, 0, 0], np.array([1000, 2000, 3000]) / 65535)


def test_discover_finds_images_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "b" / "x.PNG")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a" / "y.jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    refs = ImageAdapter().discover([tmp_path])
    assert sorted(p.name for p in refs) == ["x.PNG", "y.jpeg"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        ImageAdapter().discover([tmp_path / "missing"])


def test_image_adapter_conforms():
    assert_adapter_conforms(ImageAdapter)
