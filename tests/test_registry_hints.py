"""A file of a kind the chosen adapter does not read gets a message naming the adapter that does, or
saying that none installed does yet."""

from __future__ import annotations

import pytest

from mae_domains import registry
from mae_image.adapter import ImageAdapter


class DicomAdapter(ImageAdapter):
    name = "medical.fake"
    file_patterns = ("*.dcm", "<DICOM without extension>")


def dicom_like(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 32)
    return path


@pytest.fixture
def installed(monkeypatch):
    def use(*classes):
        monkeypatch.setattr(registry, "discover_adapters", lambda: {c.name: c for c in classes})
    return use


def test_extensionless_dicom_folder_names_the_adapter_that_reads_it(tmp_path, installed):
    for k in range(3):
        dicom_like(tmp_path / "series" / f"IM{k:04d}")
    installed(ImageAdapter, DicomAdapter)
    with pytest.raises(FileNotFoundError) as info:
        registry.discover_refs(ImageAdapter(), [tmp_path / "series"])
    message = str(info.value)
    assert "no input files found" in message and "3 DICOM file(s)" in message
    assert "read them with adapter 'medical.fake'" in message
    assert registry.adapters_reading("DICOM") == ["medical.fake"]


def test_nifti_without_a_reader_says_none_does_yet(tmp_path, installed):
    (tmp_path / "brain.nii.gz").write_bytes(b"\x1f\x8b\x08\x00")
    installed(ImageAdapter, DicomAdapter)
    with pytest.raises(FileNotFoundError, match=r"1 NIfTI file\(s\).*no installed adapter reads NIfTI yet"):
        registry.discover_refs(ImageAdapter(), [tmp_path])


def test_dicom_files_given_one_by_one_are_refused_at_discovery(tmp_path, installed):
    files = [dicom_like(tmp_path / f"{k}.dcm") for k in range(2)]
    installed(ImageAdapter, DicomAdapter)
    with pytest.raises(FileNotFoundError, match=r"no input files for adapter 'image'.*2 DICOM file\(s\).*'medical.fake'"):
        registry.discover_refs(ImageAdapter(), files)
    assert registry.discover_refs(DicomAdapter(), files) == files  # the adapter that reads them is not stopped


def test_ordinary_archives_are_untouched(tmp_path, installed):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    installed(ImageAdapter)
    assert registry.discover_refs(ImageAdapter(), [tmp_path]) == [tmp_path / "a.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^no input files found in .*\(looked for [^;]*\)$"):
        registry.discover_refs(ImageAdapter(), [tmp_path / "empty"])
