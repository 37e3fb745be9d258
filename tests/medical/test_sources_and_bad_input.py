"""Finding samples in medical archives (folders with extensionless DICOM, cines, reports, manifests) and
bad input: every problem is one line naming the file."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from PIL import Image

from mae_domains.data.sample import BadSampleError
from mae_medical import FrameRef, XrayAdapter, read_dicom_frame, read_raster
from mae_medical import dicom_codecs
from mae_medical.frame_discovery import as_frame_ref
from tests.medical import dicom_files as F


def test_folder_with_series_files_cines_reports_and_exports(tmp_path):
    archive = tmp_path / "archive"
    path, _ = F.twelve_bits_in_sixteen(archive / "series" / "IM000001.dcm")
    path.rename(archive / "series" / "IM000001")  # series files often have no extension
    F.rle_cine(archive / "us" / "cine.dcm", frames=3)
    F.structured_report(archive / "reports" / "sr.dcm")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(archive / "png.png")
    (archive / "notes.txt").write_text("not an image")
    (archive / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM")
    adapter = XrayAdapter()
    refs = adapter.discover([archive])
    assert sorted(str(r).replace(str(archive) + "/", "") for r in refs) == [
        "png.png", "series/IM000001", "us/cine.dcm#frame=0", "us/cine.dcm#frame=1", "us/cine.dcm#frame=2"]
    assert [(source.endswith("sr.dcm"), reason) for source, reason in adapter.excluded] == [
        (True, "no pixel data (Basic Text SR Storage, modality SR)")]
    assert adapter.read(refs[-1]).image.shape == (1, 12, 16)
    strided = XrayAdapter({"frame_stride": 2}).discover([archive / "us"])
    assert [r.frame for r in strided] == [0, 2]


def test_an_archive_of_reports_only_says_so(tmp_path):
    F.structured_report(tmp_path / "sr.dcm")
    with pytest.raises(FileNotFoundError, match="1 file\\(s\\) left out .*sr.dcm: no pixel data"):
        XrayAdapter().discover([tmp_path])
    with pytest.raises(BadSampleError, match="sr.dcm: no pixel data"):
        read_dicom_frame(tmp_path / "sr.dcm")


def test_unsupported_syntax_names_file_syntax_and_package(tmp_path):
    path = F.video_file(tmp_path / "cine.dcm")
    refs = XrayAdapter().discover([path])
    assert len(refs) == 1  # one failing read, not thirty
    with pytest.raises(BadSampleError) as err:
        XrayAdapter().read(refs[0])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: transfer syntax MPEG-4 AVC/H.264 High Profile / Level 4.1 "
                              "(1.2.840.10008.1.2.4.102) is not supported by pydicom")
    assert "PyAV" in message and "ffmpeg" in message


def test_missing_decoder_plugin_names_the_package(tmp_path, monkeypatch):
    path, _ = F.jpeg2000(tmp_path / "j2k.dcm")
    missing = SimpleNamespace(is_available=False, missing_dependencies=["gdcm - requires gdcm>=3.0.10"],
                              available_plugins=())
    monkeypatch.setattr(dicom_codecs, "get_decoder", lambda syntax: missing)
    dicom_codecs.decoding_problem.cache_clear()
    try:
        with pytest.raises(BadSampleError) as err:
            read_dicom_frame(path)
    finally:
        dicom_codecs.decoding_problem.cache_clear()
    assert str(err.value).startswith(f"{path}: no decoder installed for transfer syntax JPEG 2000 Image Compression "
                                     "(Lossless Only) (1.2.840.10008.1.2.4.90)")
    assert "pip install pylibjpeg pylibjpeg-openjpeg" in str(err.value)


def test_declared_decoders_cover_the_archive_syntaxes():
    for syntax in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                   "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
                   "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
                   "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        assert dicom_codecs.decoding_problem(syntax) is None, syntax
    assert "pylibjpeg" in dicom_codecs.available_decoders("1.2.840.10008.1.2.4.91")


def test_truncated_and_garbage_files_are_named(tmp_path):
    path = F.truncated(tmp_path / "cut.dcm")
    with pytest.raises(BadSampleError, match=r"cut.dcm: cannot decode pixel data .*truncated or corrupt"):
        read_dicom_frame(path)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 7)
    refs = XrayAdapter().discover([garbage])  # an unreadable header stays in: the read names it
    with pytest.raises(BadSampleError, match="garbage.dcm: not a readable DICOM file"):
        XrayAdapter().read(refs[0])


def test_png_and_tiff_exports_at_8_and_16_bit(tmp_path):
    gray8 = F.ramp(6, 7, 0, 255).astype(np.uint8)
    Image.fromarray(gray8).save(tmp_path / "a.png")
    gray16 = F.ramp(6, 7, 0, 60000).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "b.png")
    tifffile.imwrite(tmp_path / "c.tif", gray16)
    rgb = np.stack([gray8, 255 - gray8, gray8 // 2], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "d.png")
    np.testing.assert_allclose(read_raster(tmp_path / "a.png")[0], gray8 / 255.0, atol=1e-6)
    np.testing.assert_allclose(read_raster(tmp_path / "b.png")[0], gray16 / 65535.0, atol=1e-6)
    np.testing.assert_allclose(read_raster(tmp_path / "c.tif")[0], gray16 / 65535.0, atol=1e-6)
    np.testing.assert_allclose(read_raster(tmp_path / "d.png")[0], rgb @ [0.299, 0.587, 0.114] / 255.0, atol=1e-6)
    assert read_raster(tmp_path / "b.png")[1]["bits"] == 16
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.raises(BadSampleError, match="broken.png: cannot decode image"):
        read_raster(tmp_path / "broken.png")


def test_chestxray14_style_manifest(tmp_path):
    images = tmp_path / "images_001" / "images"
    images.mkdir(parents=True)
    for name in ("00000001_000.png", "00000002_000.png", "00000003_000.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / name)
    manifest = tmp_path / "Data_Entry_2017.csv"
    manifest.write_text("Image Index,Finding Labels,Patient ID\n"
                        "00000001_000.png,Cardiomegaly|Effusion,1\n"
                        "00000002_000.png,No Finding,2\n"
                        "00000003_000.png,Mass,3\n")
    adapter = XrayAdapter()
    refs = adapter.discover([manifest])  # bare names are found under the manifest's folder
    assert [r.path for r in refs] == [str(images / n) for n in ("00000001_000.png", "00000002_000.png",
                                                                 "00000003_000.png")]
    assert [adapter.label_of(r) for r in refs] == [("Cardiomegaly", "Effusion"), (), ("Mass",)]
    assert adapter.read(refs[0]).image.shape == (1, 8, 8)


def test_manifest_with_split_and_single_labels(tmp_path):
    F.rle_cine(tmp_path / "us" / "cine.dcm", frames=2)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b.png")
    manifest = tmp_path / "labels.csv"
    manifest.write_text("image,label,split\nus/cine.dcm,benign,train\nb.png,malignant,test\n")
    adapter = XrayAdapter({"split": "train"})
    refs = adapter.discover([manifest])
    assert [(str(r).replace(str(tmp_path) + "/", ""), adapter.label_of(r)) for r in refs] == [
        ("us/cine.dcm#frame=0", "benign"), ("us/cine.dcm#frame=1", "benign")]
    (tmp_path / "bad.csv").write_text("name,label\nx.png,a\n")
    with pytest.raises(ValueError, match="bad.csv: a manifest needs an image column"):
        adapter.discover([tmp_path / "bad.csv"])


def test_frame_references_from_strings(tmp_path):
    path, stack = F.rle_cine(tmp_path / "cine.dcm", frames=3)
    assert as_frame_ref(f"{path}#frame=2") == FrameRef(str(path), 2, 3)
    np.testing.assert_allclose(XrayAdapter().read(f"{path}#frame=2").image[0], stack[2] / 255.0, atol=1e-6)
    with pytest.raises(BadSampleError, match="has 3 frame\\(s\\); frame 5 does not exist"):
        read_dicom_frame(path, 5)


def test_a_jpeg_renamed_dcm_is_named_as_not_dicom(tmp_path):
    """Not "no pixel data (unknown SOP class)": the file is no DICOM at all."""
    jpeg = tmp_path / "scan.dcm"
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(jpeg, format="JPEG")
    text = tmp_path / "notes.dcm"
    text.write_bytes(b"exported by a viewer\n" * 20)
    adapter = XrayAdapter()
    refs = adapter.discover([tmp_path])
    assert adapter.excluded == [] and sorted(str(r) for r in refs) == [str(text), str(jpeg)]
    with pytest.raises(BadSampleError, match=r"scan\.dcm: not a DICOM file \(no DICM preamble, and pydicom cannot "
                                             r"parse it; its bytes are a JPEG image\)"):
        adapter.read(jpeg)
    with pytest.raises(BadSampleError, match=r"notes\.dcm: not a DICOM file \(no DICM preamble, and pydicom "
                                             r"cannot parse it\)"):
        adapter.read(text)
    # the CT adapter leaves it out with that reason, and points to no other DICOM reader
    from mae_domains.registry import discover_refs, get_adapter

    with pytest.raises(FileNotFoundError) as err:
        discover_refs(get_adapter("medical.ct"), [jpeg])
    assert "medical.xray" not in str(err.value) and "medical.ultrasound" not in str(err.value)
    ct = get_adapter("medical.ct")
    with pytest.raises(FileNotFoundError):
        ct.discover([tmp_path])
    assert sorted(ct.excluded) == [
        (str(text), "not a DICOM file (no DICM preamble, and pydicom cannot parse it)"),
        (str(jpeg), "not a DICOM file (no DICM preamble, and pydicom cannot parse it; its bytes are a JPEG image)")]


def test_a_dicom_image_header_without_pixel_data_holds_no_image(tmp_path):
    ds = F.base_dataset(8, 8)  # Rows, Columns, BitsAllocated ... but no Pixel Data element
    path = F.write(ds, tmp_path / "header_only.dcm")
    with pytest.raises(BadSampleError) as err:
        XrayAdapter().read(path)
    assert err.value.reason == ("holds no image: no Pixel Data element (Digital X-Ray Image Storage - For "
                                "Presentation, modality DX); structured reports and presentation states hold none")
