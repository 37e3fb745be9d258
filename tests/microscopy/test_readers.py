"""Reading real archive layouts written by the tests: pixels, channel names and pixel sizes must be exact."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from mae_domains.data.sample import BadSampleError
from mae_domains.data.windows import PixelWindow

from mae_microscopy.channel_files import ChannelFilesField, compile_pattern, group_channel_files, well_name
from mae_microscopy.image_info import length_in_um
from mae_microscopy.field_discovery import CropRef, ReaderSettings, discover_fields
from mae_microscopy.tiff_reader import TiffField
from mae_microscopy.zarr_reader import ZarrField, ZarrImageRef, list_zarr_fields
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import (
    PAINTING, ramp, write_channel_plate, write_imagej, write_ome_tiff, write_ome_zarr,
)


def test_units_to_micrometres():
    assert length_in_um(650, "nm") == pytest.approx(0.65)
    assert length_in_um(0.65, "µm") == length_in_um(0.65, "μm") == length_in_um(0.65, "micron") == pytest.approx(0.65)
    assert length_in_um(0.001, "mm") == pytest.approx(1.0)
    assert length_in_um(1.0, "pixel") is None and length_in_um(None, "µm") is None


def test_ome_tiff_names_pixel_size_and_windows(tmp_path):
    data = ramp((3, 40, 56))
    path = write_ome_tiff(tmp_path / "a.ome.tif", data, ["DNA", "ER", "Mito"], pixel_size=650, unit="nm", tile=16)
    field = TiffField(str(path))
    info = field.info()
    assert info.channel_names == ("DNA", "ER", "Mito")
    assert info.pixel_size == pytest.approx((0.65, 0.65))
    assert info.sizes == (1, 3, 1, 40, 56) and info.format == "ome-tiff" and info.dtype == "uint16"
    block = field.read(0, [2, 0], None, PixelWindow(5, 7, 16, 20))
    assert block.dtype == np.float32 and block.shape == (2, 1, 16, 20)
    np.testing.assert_array_equal(block[:, 0], data[[2, 0], 5:21, 7:27])
    # a window over the border is zero-padded
    edge = field.read(0, [1], None, PixelWindow(32, 48, 16, 16))
    np.testing.assert_array_equal(edge[0, 0, :8, :8], data[1, 32:40, 48:56])
    assert not edge[0, 0, 8:].any() and not edge[0, 0, :, 8:].any()


def test_ome_tiff_time_and_z(tmp_path):
    data = ramp((2, 3, 4, 24, 32))  # T C Z Y X
    write_ome_tiff(tmp_path / "tz.ome.tif", data, PAINTING[:3], pixel_size=0.33, z_step=2.0, axes="TCZYX")
    field = TiffField(str(tmp_path / "tz.ome.tif"))
    assert field.info().sizes == (2, 3, 4, 24, 32) and field.info().z_step == pytest.approx(2.0)
    block = field.read(1, [2], [1, 3], PixelWindow(0, 0, 24, 32))
    np.testing.assert_array_equal(block[0], data[1, 2, [1, 3]])


def test_imagej_hyperstack(tmp_path):
    data = ramp((2, 3, 4, 20, 24), "uint8")  # T Z C Y X
    path = write_imagej(tmp_path / "ij.tif", data, ["DNA", "RNA", "ER", "Mito"], pixel_size=0.5, z_step=1.5)
    info = TiffField(str(path)).info()
    assert info.format == "imagej" and info.sizes == (2, 4, 3, 20, 24)
    assert info.channel_names == ("DNA", "RNA", "ER", "Mito")
    assert info.pixel_size == pytest.approx((0.5, 0.5)) and info.z_step == pytest.approx(1.5)
    block = TiffField(str(path)).read(1, [3], [2], PixelWindow(0, 0, 20, 24))
    np.testing.assert_array_equal(block[0, 0], data[1, 2, 3])


def test_plain_multipage_pages_as_channels_or_planes(tmp_path):
    pages = ramp((3, 16, 16))
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for i, name in enumerate(["DNA", "ER", "Mito"]):
            tif.write(pages[i], extratags=[(285, "s", 0, name, True)])  # PageName
    as_channels = TiffField(str(tmp_path / "pages.tif"))
    assert as_channels.info().channel_names == ("DNA", "ER", "Mito")
    np.testing.assert_array_equal(as_channels.read(0, [1], None, PixelWindow(0, 0, 16, 16))[0, 0], pages[1])
    as_planes = TiffField(str(tmp_path / "pages.tif"), pages_axis="Z")
    assert as_planes.info().sizes == (1, 1, 3, 16, 16)
    np.testing.assert_array_equal(as_planes.read(0, [0], None, PixelWindow(0, 0, 16, 16))[0], pages)


def nuclei_stack(planes: int = 31, size: int = 32) -> np.ndarray:
    """A 16-bit Z-stack whose brightest plane differs per pixel (so the maximum projection is checkable)."""
    rng = np.random.default_rng(0)
    return rng.integers(100, 4000, (planes, size, size)).astype(np.uint16)


def test_31_page_gray_stack_without_axis_metadata_is_refused_naming_pages_axis(tmp_path):
    """tifffile's plain write (a ``shaped`` description only) and a page-by-page write without any
    metadata: 31 unnamed gray pages are a Z-stack far more often than 31 channels."""
    stack = nuclei_stack()
    tifffile.imwrite(tmp_path / "shaped.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "bare.tif", stack, photometric="minisblack", metadata=None)
    few = tmp_path / "three.tif"
    tifffile.imwrite(few, stack[:3], photometric="minisblack")
    assert TiffField(str(few), pages_axis="auto").info().sizes == (1, 3, 1, 32, 32)  # a few pages: channels
    for name in ("shaped.tif", "bare.tif"):
        with pytest.raises(ValueError, match=rf"{name}: holds 31 same-shaped gray pages without axis "
                                             r"metadata .*set data.options.pages_axis to z"):
            make_adapter().discover([tmp_path / name])  # alone: nothing to train on, one line
        adapter = make_adapter()
        refs = adapter.discover([tmp_path / name, few])  # among good files: skipped and listed when read
        stack_ref = next(r for r in refs if r.field.source.endswith(name))
        with pytest.raises(BadSampleError, match="set data.options.pages_axis to z"):
            adapter.read(stack_ref)
        as_z = make_adapter(pages_axis="z")
        sample = as_z.read(as_z.discover([tmp_path / name])[0])
        assert sample.meta["channel_names"] == ["channel_0"] and sample.meta["window"] == [0, 0, 32, 32]
        np.testing.assert_array_equal(sample.image[0], stack.max(axis=0).astype(np.float32))  # maximum projection


def test_z_stacks_with_imagej_or_ome_axes_are_planes(tmp_path):
    stack = nuclei_stack()
    tifffile.imwrite(tmp_path / "ij.tif", stack, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.5})
    write_ome_tiff(tmp_path / "z.ome.tif", stack, ["DNA"], pixel_size=0.325, z_step=0.5, axes="ZYX")
    for name in ("ij.tif", "z.ome.tif"):
        field = TiffField(str(tmp_path / name), pages_axis="auto")
        info = field.info()
        assert info.sizes == (1, 1, 31, 32, 32), name
        assert info.pixel_size == pytest.approx((0.325, 0.325)) and info.z_step == pytest.approx(0.5)
        np.testing.assert_array_equal(field.read(0, [0], None, PixelWindow(0, 0, 32, 32))[0], stack)


def test_8bit_and_float_tiff(tmp_path):
    for dtype in ("uint8", "float32"):
        data = ramp((2, 12, 12), dtype)
        write_ome_tiff(tmp_path / f"{dtype}.ome.tif", data, ["DNA", "ER"])
        field = TiffField(str(tmp_path / f"{dtype}.ome.tif"))
        assert field.info().dtype == dtype
        np.testing.assert_array_equal(field.read(0, [0, 1], None, PixelWindow(0, 0, 12, 12))[:, 0], data.astype(np.float32))


def test_rgb_he_as_three_named_channels(tmp_path):
    rgb = ramp((30, 40, 3), "uint8")
    tifffile.imwrite(tmp_path / "he.tif", rgb, photometric="rgb")
    field = TiffField(str(tmp_path / "he.tif"), rgb_names=("R", "G", "B"))
    assert field.info().channel_names == ("R", "G", "B") and field.info().channels == 3
    block = field.read(0, [0, 1, 2], None, PixelWindow(0, 0, 30, 40))
    np.testing.assert_array_equal(block[:, 0], np.moveaxis(rgb, -1, 0))


def test_per_channel_files_grouped_into_fields(tmp_path):
    written = write_channel_plate(tmp_path / "plate7", [(1, 1), (2, 3)], fields=2, channels=3, size=24)
    (tmp_path / "plate7" / "r02c03f02p01-ch3sk1fk1fl1.tiff").unlink()  # an incomplete field loses ch3
    files = sorted((tmp_path / "plate7").iterdir())
    groups, rest = group_channel_files(files, [compile_pattern("harmony")])
    assert not rest and len(groups) == 4
    by_id = {(g.well, g.site): g for g in groups}
    assert set(by_id) == {("A01", "1"), ("A01", "2"), ("B03", "1"), ("B03", "2")}
    assert by_id[("B03", "2")].channel_labels == ("1", "2")
    field = ChannelFilesField(by_id[("B03", "1")], {"1": "DNA", "2": "ER", "3": "Mito"})
    assert field.info().channel_names == ("DNA", "ER", "Mito") and field.info().sizes == (1, 3, 1, 24, 24)
    block = field.read(0, [2, 0], None, PixelWindow(4, 4, 8, 8))
    np.testing.assert_array_equal(block[0, 0], written[(2, 3, 1, 1, 3)][4:12, 4:12])
    np.testing.assert_array_equal(block[1, 0], written[(2, 3, 1, 1, 1)][4:12, 4:12])
    assert well_name({"row": "27", "col": "4"}) == "AA04" and well_name({"well": "b7"}) == "B07"


def test_per_channel_files_with_planes_and_imagexpress_names(tmp_path):
    written = write_channel_plate(tmp_path / "p", [(1, 2)], fields=1, channels=2, size=16, planes=3)
    groups, _ = group_channel_files(sorted((tmp_path / "p").iterdir()), [compile_pattern("harmony")])
    field = ChannelFilesField(groups[0])
    assert field.info().sizes == (1, 2, 3, 16, 16) and field.info().channel_names == ("ch1", "ch2")
    np.testing.assert_array_equal(field.read(0, [1], [2], PixelWindow(0, 0, 16, 16))[0, 0], written[(1, 2, 1, 3, 2)])
    (tmp_path / "mx").mkdir()
    for w in (1, 2):
        tifffile.imwrite(tmp_path / "mx" / f"BR00116991_C05_s3_w{w}3F9A.tif", ramp((8, 8), offset=w))
    groups, _ = group_channel_files(sorted((tmp_path / "mx").iterdir()), [compile_pattern("imagexpress")])
    assert len(groups) == 1 and (groups[0].plate, groups[0].well, groups[0].site) == ("BR00116991", "C05", "3")


def test_ome_zarr_two_levels_and_versions(tmp_path):
    data = ramp((3, 32, 48))
    for version in ("0.4", "0.5"):
        path = write_ome_zarr(tmp_path / f"img{version}.zarr", data, ["DNA", "AGP", "Mito"], 0.5, version)
        full, half = ZarrField(ZarrImageRef(str(path)), 0), ZarrField(ZarrImageRef(str(path)), 1)
        assert full.info().channel_names == ("DNA", "AGP", "Mito") and full.info().levels == 2
        assert full.info().pixel_size == pytest.approx((0.5, 0.5))
        assert half.info().pixel_size == pytest.approx((1.0, 1.0)) and half.info().sizes == (1, 3, 1, 16, 24)
        np.testing.assert_array_equal(full.read(0, [1], None, PixelWindow(3, 5, 8, 8))[0, 0], data[1, 3:11, 5:13])
        np.testing.assert_array_equal(half.read(0, [2], None, PixelWindow(0, 0, 16, 24))[0, 0], data[2, ::2, ::2])
    with pytest.raises(Exception, match="2 resolution level"):
        ZarrField(ZarrImageRef(str(tmp_path / "img0.4.zarr")), 3).info()


def test_ome_zarr_hcs_plate_and_plain_zarr(tmp_path):
    plate = zarr.open_group(str(tmp_path / "plate.zarr"), mode="w", zarr_format=2)
    plate.attrs["plate"] = {"name": "P1", "wells": [{"path": "B/3"}], "rows": [{"name": "B"}], "columns": [{"name": "3"}]}
    well = plate.create_group("B/3")
    well.attrs["well"] = {"images": [{"path": "0"}, {"path": "1"}]}
    for site in ("0", "1"):
        write_ome_zarr(tmp_path / "plate.zarr" / "B" / "3" / site, ramp((2, 16, 16), offset=int(site)), ["DNA", "ER"])
    refs = list_zarr_fields(tmp_path / "plate.zarr")
    assert [(r.plate, r.well, r.site) for r in refs] == [("P1", "B03", "0"), ("P1", "B03", "1")]
    np.testing.assert_array_equal(ZarrField(refs[1]).read(0, [0], None, PixelWindow(0, 0, 16, 16))[0, 0],
                                  ramp((2, 16, 16), offset=1)[0])
    arr = zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(2, 4, 16, 16), dtype="uint16", chunks=(1, 1, 8, 8))
    arr[:] = ramp((2, 4, 16, 16))
    arr.attrs.update({"axes": "CZYX", "channel_names": ["DNA", "ER"], "pixel_size": [0.3, 0.4]})
    plain = ZarrField(ZarrImageRef(str(tmp_path / "plain.zarr")))
    assert plain.info().sizes == (1, 2, 4, 16, 16) and plain.info().pixel_size == (0.3, 0.4)
    np.testing.assert_array_equal(plain.read(0, [1], [3], PixelWindow(0, 0, 16, 16))[0, 0], arr[1, 3])


def test_discover_mixed_folder_and_adapter_reads_exact_pixels(tmp_path):
    data = ramp((3, 64, 64))
    (tmp_path / "plateA").mkdir()
    write_ome_tiff(tmp_path / "plateA" / "x.ome.tif", data, ["DNA", "ER", "Mito"], pixel_size=0.65)
    write_ome_zarr(tmp_path / "plateA" / "z.zarr", data[:2, :32, :32], ["DNA", "RNA"])
    write_channel_plate(tmp_path / "plateB", [(1, 1)], fields=1, channels=2, size=32)
    entries = discover_fields([tmp_path], ReaderSettings())
    assert sorted(e.info.format for e in entries) == ["channel-files", "ome-tiff", "ome-zarr"]
    adapter = make_adapter(32, sampling="grid", channel_map={"1": "DNA", "2": "AGP"})
    refs = adapter.discover([tmp_path])
    assert {r.signature for r in refs} == {(("channel_names", ("DNA", "ER", "Mito")),), (("channel_names", ("DNA", "RNA")),),
                                           (("channel_names", ("DNA", "AGP")),)}
    tiff_refs = [r for r in refs if r.field.info.format == "ome-tiff"]
    assert [r.window for r in tiff_refs] == [(0, 0, 32, 32), (0, 32, 32, 32), (32, 0, 32, 32), (32, 32, 32, 32)]
    sample = adapter.read(tiff_refs[3])
    np.testing.assert_array_equal(sample.image, data[:, 32:, 32:].astype(np.float32))
    assert sample.meta["channel_names"] == ["DNA", "ER", "Mito"] and sample.meta["pixel_size"] == pytest.approx([0.65, 0.65])
    assert sample.meta["plate"] == "plateA" and sample.valid.all()
    plate_b = next(r for r in refs if r.field.info.format == "channel-files")
    assert (plate_b.field.id("plate"), plate_b.field.id("well"), plate_b.field.id("site")) == ("plateB", "A01", "1")


def test_z_stack_modes_and_time_frames(tmp_path):
    data = ramp((2, 5, 32, 32))  # C Z Y X, 16-bit
    write_ome_tiff(tmp_path / "stack.ome.tif", data, ["DNA", "ER"], z_step=1.0, axes="CZYX")
    adapter = make_adapter(32, z_mode="max", foreground=False)
    (ref,) = adapter.discover([tmp_path / "stack.ome.tif"])
    np.testing.assert_array_equal(adapter.read(ref).image, data.max(axis=1).astype(np.float32))
    slices = make_adapter(32, z_mode="slices", foreground=False)
    refs = slices.discover([tmp_path / "stack.ome.tif"])
    assert [r.z for r in refs] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(slices.read(refs[3]).image, data[:, 3].astype(np.float32))
    volume = make_adapter(32, z_mode="volume", crop_depth=4, patch_depth=2, foreground=False)
    sample = volume.read(volume.discover([tmp_path / "stack.ome.tif"])[0])
    start = sample.meta["planes"][0]
    assert sample.image.shape == (2, 4, 32, 32) and sample.meta["planes"] == list(range(start, start + 4))
    np.testing.assert_array_equal(sample.image, data[:, start:start + 4].astype(np.float32))
    lapse = ramp((3, 2, 32, 32))  # T C Y X
    write_ome_tiff(tmp_path / "lapse.ome.tif", lapse, ["DNA", "ER"], axes="TCYX")
    frames = make_adapter(32, foreground=False).discover([tmp_path / "lapse.ome.tif"])
    assert [r.t for r in frames] == [0, 1, 2]
    np.testing.assert_array_equal(make_adapter(32).read(frames[2]).image, lapse[2].astype(np.float32))


def test_manifest_ids_and_channel_selection(tmp_path):
    data = ramp((4, 32, 32))
    write_ome_tiff(tmp_path / "w1.ome.tif", data, ["Mito", "DNA", "ER", "AGP"])
    write_channel_plate(tmp_path / "pf", [(1, 1)], fields=1, channels=4, size=32)
    (tmp_path / "m.csv").write_text(
        "path,plate,well,site,perturbation,label,channels,channel_names\n"
        "w1.ome.tif,P9,B02,1,DMSO,ctrl,4,\n"
        "pf/r01c01f01p01-ch*sk1fk1fl1.tiff,P9,A01,1,drugX,hit,4,DNA;ER;Mito;AGP\n")
    adapter = make_adapter(32, channels=["DNA", "Mito"], foreground=False)
    refs = adapter.discover([tmp_path / "m.csv"])
    assert {r.signature for r in refs} == {(("channel_names", ("DNA", "Mito")),)}
    first = adapter.read(refs[0])
    assert {k: first.meta[k] for k in ("plate", "well", "site", "perturbation", "label")} == \
        {"plate": "P9", "well": "B02", "site": "1", "perturbation": "DMSO", "label": "ctrl"}
    np.testing.assert_array_equal(first.image, data[[1, 0]].astype(np.float32))
    assert adapter.classes == ["ctrl", "hit"] and first.label == 0
    second = adapter.read(refs[-1])
    assert second.meta["channel_names"] == ["DNA", "Mito"] and second.meta["perturbation"] == "drugX"
    files = sorted((tmp_path / "pf").iterdir())
    np.testing.assert_array_equal(second.image[1], tifffile.imread(files[2]).astype(np.float32))
    assert isinstance(refs[0], CropRef)


def test_adapter_reads_ome_zarr_pixels(tmp_path):
    """Through the adapter, whose readers get their header from discovery (the array is found on first read)."""
    data = ramp((2, 64, 64))
    write_ome_zarr(tmp_path / "z.zarr", data, ["DNA", "RNA"])
    adapter = make_adapter(32, sampling="grid")
    refs = adapter.discover([tmp_path])
    sample = adapter.read(refs[3])
    np.testing.assert_array_equal(sample.image, data[:, 32:, 32:].astype(np.float32))
