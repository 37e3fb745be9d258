"""``mae-domains inspect`` for every built-in adapter: sample.npy holds the pixel values written to the file,
sample.json describes them, preview.png is drawn; bad paths fail with one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from mae_domains.cli import main
from mae_domains.data.sample import Sample
from mae_domains.inspection import inspect_sample
from mae_domains.preview import NODATA_RGB, composite_channels, preview_panels, sample_axes
from mae_image import ImageAdapter
from tests.remote_sensing.rasters import ORIGIN, UTM33N, write_raster

S2_FOUR = "data.options.groups=[[B2,B3,B4,B8]]"


def run_inspect(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["-q", "inspect", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load(out: Path) -> tuple[np.ndarray, dict]:
    assert (out / "preview.png").stat().st_size > 0
    with Image.open(out / "preview.png") as png:
        assert png.format == "PNG" and min(png.size) > 50
    return np.load(out / "sample.npy", allow_pickle=False), json.loads((out / "sample.json").read_text())


def single_scene(array: np.ndarray, report: dict) -> np.ndarray:
    """The multispectral reader returns one dated frame, ``(1, C, H, W)``, today; ``(C, H, W)`` is also fine."""
    if array.ndim == 4:
        assert array.shape[0] == 1 and report["frames"] == 1 and report["axes"] == ["time", "channel", "y", "x"]
        return array[0]
    assert report["axes"] == ["channel", "y", "x"]
    return array


def check_channel_stats(report: dict, array: np.ndarray, channel_axis: int = 0) -> None:
    planes = np.moveaxis(array, channel_axis, 0)
    assert len(report["channels"]) == planes.shape[0]
    for entry, plane in zip(report["channels"], planes):
        assert entry["min"] == pytest.approx(float(plane.min()))
        assert entry["max"] == pytest.approx(float(plane.max()))
        assert entry["p1"] == pytest.approx(float(np.percentile(plane, 1)), rel=1e-5)
        assert entry["p99"] == pytest.approx(float(np.percentile(plane, 99)), rel=1e-5)
    assert report["value_range"] == {"min": pytest.approx(float(array.min())), "max": pytest.approx(float(array.max()))}


# ----- image --------------------------------------------------------------------------------------
def test_image_gray_png_as_one_channel(tmp_path, capsys):
    gray = (np.arange(24 * 36).reshape(24, 36) % 251).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    code, out, _ = run_inspect(capsys, "--adapter", "image", str(tmp_path / "gray.png"), "--out", str(tmp_path / "o"),
                               "model.in_chans=1")
    assert code == 0 and "sample 0 of 1" in out and "(1, 24, 36)" in out
    array, report = load(tmp_path / "o")
    assert array.dtype == np.float32 and array.shape == (1, 24, 36)
    np.testing.assert_allclose(array[0], gray / 255.0, atol=1e-7)
    assert report["shape"] == [1, 24, 36] and report["axes"] == ["channel", "y", "x"] and report["dtype"] == "float32"
    assert report["samples"] == 1 and report["index"] == 0 and report["adapter"] == "image"
    assert report["source"] == str(tmp_path / "gray.png")
    assert report["valid_mask"] is False and report["valid_fraction"] == 1.0
    assert report["frames"] is None and report["gsd"] is None and report["crs"] is None
    check_channel_stats(report, array)


def test_image_rgb_png_channels_first(tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    code, _, _ = run_inspect(capsys, "--adapter", "image", "--out", str(tmp_path / "o"), str(tmp_path / "rgb.png"))
    assert code == 0
    array, report = load(tmp_path / "o")
    np.testing.assert_allclose(array, np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-7)
    assert report["shape"] == [3, 20, 28]
    check_channel_stats(report, array)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_image_16bit_keeps_its_depth(tmp_path, capsys, suffix):
    deep = (np.arange(16 * 30, dtype=np.uint16).reshape(16, 30) * 131)
    path = tmp_path / f"deep{suffix}"
    Image.fromarray(deep).save(path) if suffix == ".png" else tifffile.imwrite(path, deep)
    assert run_inspect(capsys, "--adapter", "image", str(path), "model.in_chans=1", "--out", str(tmp_path / "o"))[0] == 0
    array, report = load(tmp_path / "o")
    np.testing.assert_allclose(array[0], deep / 65535.0, atol=1e-7)
    assert report["channels"][0]["max"] == pytest.approx(float(deep.max()) / 65535.0)


def test_folder_index_picks_one_of_its_samples(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.full((12, 12), 10 * (k + 1), np.uint8)).save(folder / f"img{k}.png")
    code, out, _ = run_inspect(capsys, "--adapter", "image", "--index", "2", "--out", str(tmp_path / "o"),
                               str(folder), "model.in_chans=1")
    assert code == 0 and "sample 2 of 3" in out
    array, report = load(tmp_path / "o")
    assert report["samples"] == 3 and report["index"] == 2 and report["source"].endswith("img2.png")
    np.testing.assert_allclose(array, 30 / 255.0, atol=1e-7)

    code, _, err = run_inspect(capsys, "--adapter", "image", "--index", "3", "--out", str(tmp_path / "o"), str(folder))
    assert code == 2 and "yields 3 sample(s)" in err and "out of range 0..2" in err


# ----- remote sensing -------------------------------------------------------------------------------
def test_multispectral_multiband_geotiff(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = rng.integers(100, 5000, (4, 40, 48)).astype(np.uint16)
    data[:, :10, :8] = 0  # nodata corner: 80 of 1920 pixels
    path = write_raster(tmp_path / "scene.tif", data, res=10.0, nodata=0, descriptions=["B2", "B3", "B4", "B8"])
    code, out, _ = run_inspect(capsys, "--adapter", "remote_sensing.multispectral", str(path), S2_FOUR,
                               "--out", str(tmp_path / "o"))
    assert code == 0, out
    array, report = load(tmp_path / "o")
    array = single_scene(array, report)
    assert array.shape == (4, 40, 48) and array.dtype == np.float32
    valid = np.ones((40, 48), bool)
    valid[:10, :8] = False
    np.testing.assert_array_equal(array[:, valid], data[:, valid].astype(np.float32))
    assert report["channel_names"] == ["B2", "B3", "B4", "B8"]
    assert report["gsd"] == [10.0, 10.0] and report["crs"] == UTM33N
    assert report["bounds"] == [ORIGIN[0], ORIGIN[1] - 400, ORIGIN[0] + 480, ORIGIN[1]]
    assert report["valid_mask"] is True and report["valid_fraction"] == pytest.approx(1 - 80 / 1920)
    for entry, band in zip(report["channels"], data):  # statistics over valid pixels only
        assert entry["min"] == band[valid].min() and entry["max"] == band[valid].max()
        assert entry["p99"] == pytest.approx(float(np.percentile(band[valid].astype(np.float32), 99)))
    assert report["meta"]["wavelengths"] == [490.0, 560.0, 665.0, 842.0]


def test_large_scene_grid_chips_walked_by_index(tmp_path, capsys):
    rows, cols = np.mgrid[0:80, 0:72]
    data = np.stack([rows * 100 + cols + 10000 * k for k in range(4)]).astype(np.float32)
    path = write_raster(tmp_path / "big.tif", data, descriptions=["B2", "B3", "B4", "B8"])
    code, out, _ = run_inspect(capsys, "--adapter", "remote_sensing.multispectral", str(path), "--index", "4",
                               "--out", str(tmp_path / "o"), S2_FOUR, "data.options.sampling=grid", "model.img_size=32")
    assert code == 0, out
    array, report = load(tmp_path / "o")
    array = single_scene(array, report)
    # grid windows of 32 px: rows start at 0, 32, 48 and columns at 0, 32, 40, so chip 4 is (row 32, col 32)
    assert report["samples"] == 9 and report["meta"]["window"] == [32, 32, 32, 32]
    np.testing.assert_array_equal(array, data[:, 32:64, 32:64])
    assert report["bounds"] == [ORIGIN[0] + 320, ORIGIN[1] - 640, ORIGIN[0] + 640, ORIGIN[1] - 320]


def test_multispectral_folder_of_band_files(tmp_path, capsys):
    folder = tmp_path / "T33UUP_20210615"
    ramps = {band: (np.arange(32 * 32).reshape(32, 32) + 1000 * k).astype(np.float32)
             for k, band in enumerate(("B02", "B03", "B04", "B08"))}
    for band, values in ramps.items():
        write_raster(folder / f"T33UUP_20210615_{band}_10m.tif", values, res=10.0)
    for band, value in (("B05", 5.0), ("B06", 6.0), ("B07", 7.0), ("B8A", 8.5), ("B11", 11.0), ("B12", 12.0)):
        write_raster(folder / f"T33UUP_20210615_{band}_20m.tif", np.full((16, 16), value, np.float32), res=20.0)
    code, out, _ = run_inspect(capsys, "--adapter", "remote_sensing.multispectral", str(folder),
                               "--out", str(tmp_path / "o"))
    assert code == 0, out
    array, report = load(tmp_path / "o")
    array = single_scene(array, report)
    names = ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
    assert report["channel_names"] == names and array.shape == (10, 32, 32)
    for k, band in enumerate(("B02", "B03", "B04", "B08")):  # 10 m bands on their own grid: exact
        np.testing.assert_array_equal(array[k], ramps[band])
    for k, value in zip(range(4, 10), (5.0, 6.0, 7.0, 8.5, 11.0, 12.0)):  # 20 m bands resampled: constants stay
        np.testing.assert_allclose(array[k], value, atol=1e-5)
    assert report["gsd"] == [10.0, 10.0] and report["samples"] == 1 and report["valid_fraction"] == 1.0
    assert report["source"] == str(folder / "T33UUP_20210615")
    check_channel_stats(report, array)


def test_temporal_series_folder(tmp_path, capsys):
    folder = tmp_path / "field_7"
    for i, day in enumerate(["20210801", "20210402", "20210615"]):
        values = np.full((2, 24, 24), 1000 + 100 * i, np.uint16)
        values[1] += 7
        write_raster(folder / f"S2_{day}.tif", values, descriptions=["B4", "B8"])
    code, out, _ = run_inspect(capsys, "--adapter", "remote_sensing.temporal", "--out", str(tmp_path / "o"),
                               str(folder), "data.options.bands=[B4,B8]")
    assert code == 0, out
    array, report = load(tmp_path / "o")
    assert array.shape == (3, 2, 24, 24) and report["axes"] == ["time", "channel", "y", "x"]
    assert report["frames"] == 3 and report["dates"] == ["2021-04-02", "2021-06-15", "2021-08-01"]
    for t, base in enumerate((1100, 1200, 1000)):  # frames sorted by date
        np.testing.assert_array_equal(array[t, 0], base)
        np.testing.assert_array_equal(array[t, 1], base + 7)
    assert report["channel_names"] == ["B4", "B8"]
    assert [c["min"] for c in report["channels"]] == [1000, 1007] and [c["max"] for c in report["channels"]] == [1200, 1207]
    check_channel_stats(report, array, channel_axis=1)


# ----- errors -------------------------------------------------------------------------------------
def test_errors_are_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.png"
    code, _, err = run_inspect(capsys, "--adapter", "image", str(missing), "--out", str(tmp_path / "o"))
    assert code == 2 and str(missing) in err and "no such file" in err and len(err.strip().splitlines()) == 1

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, _, err = run_inspect(capsys, "--adapter", "image", str(tmp_path / "broken.png"), "--out", str(tmp_path / "o"))
    assert code == 2 and "broken.png: cannot decode" in err and len(err.strip().splitlines()) == 1

    (tmp_path / "empty").mkdir()
    code, _, err = run_inspect(capsys, "--adapter", "image", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert code == 2 and "no input files found" in err and str(tmp_path / "empty") in err

    (tmp_path / "bad.tif").write_bytes(b"II*\x00 not a tiff at all")
    code, _, err = run_inspect(capsys, "--adapter", "remote_sensing.multispectral", str(tmp_path / "bad.tif"),
                               "--out", str(tmp_path / "o"))
    assert code == 2 and "bad.tif" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_reader_crash_becomes_a_bad_sample_naming_the_file(tmp_path):
    class Crashing(ImageAdapter):
        def read(self, ref):
            raise RuntimeError("decoder exploded")

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"x\.png: cannot read \(RuntimeError: decoder exploded\)"):
        inspect_sample(Crashing(), tmp_path / "x.png", tmp_path / "o")


# ----- the preview hook and its default ---------------------------------------------------------------
def test_adapter_can_override_the_preview(tmp_path):
    class OwnPreview(ImageAdapter):
        def render_sample(self, sample: Sample, path: Path) -> Path:
            path.write_bytes(b"own picture of %d channels" % sample.image.shape[0])
            return path

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    result = inspect_sample(OwnPreview(), tmp_path / "x.png", tmp_path / "o")
    assert result.preview.read_bytes() == b"own picture of 3 channels"


def test_default_preview_layouts():
    rng = np.random.default_rng(0)
    gray = preview_panels(rng.random((1, 8, 8)), {})
    assert len(gray) == 1 and gray[0][0].endswith("as read, 0-1") and gray[0][1].shape == (8, 8, 3)
    assert [t for t, _ in preview_panels(rng.random((3, 8, 8)), {})] == ["RGB, as read, 0-1"]

    bands = ["B2", "B3", "B4", "B8"]
    meta = {"channel_names": bands, "wavelengths": [490.0, 560.0, 665.0, 842.0]}
    image = rng.random((4, 8, 8)).astype(np.float32) * 3000
    valid = np.ones((8, 8), bool)
    valid[0, 0] = False
    panels = preview_panels(image, meta, valid)
    assert panels[0][0] == "composite B4/B3/B2, stretched 1-99 %" and len(panels) == 5
    assert [t for t, _ in panels[1:]] == ["B2 (490 nm)", "B3 (560 nm)", "B4 (665 nm)", "B8 (842 nm)"]
    assert all(tuple(p[0, 0]) == NODATA_RGB for _, p in panels) and all(p[1:, 1:].max() <= 1 for _, p in panels)

    series = preview_panels(image[None].repeat(3, axis=0), {**meta, "dates": ["2021-04-02", None, "2021-08-01"]})
    assert [t.split(":")[0] for t, _ in series] == ["2021-04-02", "frame 1", "2021-08-01"]
    one_frame = preview_panels(image[None], {**meta, "dates": [None]})  # drawn like a 2D sample
    assert [t for t, _ in one_frame] == [t for t, _ in preview_panels(image, meta)]

    volume = preview_panels(rng.random((1, 6, 8, 10)), {})
    assert [p.shape[:2] for _, p in volume] == [(8, 10), (6, 10), (6, 8)]


def test_axes_and_composite_rules():
    assert sample_axes(np.zeros((3, 2, 4, 4)), {"dates": ["a", "b", "c"]}) == ("time", "channel", "y", "x")
    assert sample_axes(np.zeros((3, 2, 4, 4)), {}) == ("channel", "z", "y", "x")
    assert sample_axes(np.zeros((2, 4, 4)), {"axes": ["time", "y", "x"]}) == ("time", "y", "x")
    with pytest.raises(ValueError, match="does not match"):
        sample_axes(np.zeros((2, 4, 4)), {"axes": ["y", "x"]})
    assert composite_channels(2) is None and composite_channels(5) == [0, 1, 2]
    assert composite_channels(3, [842.0, 1610.0, 2190.0]) == [0, 1, 2]  # no visible bands: first three
    assert composite_channels(4, [490.0, 560.0, 665.0, 842.0]) == [2, 1, 0]
