"""The reason a command cannot start reaches the user in one message: which adapter reads the files,
why no sample was readable."""

from __future__ import annotations

import numpy as np
import tifffile

from mae_domains.cli import main
from mae_domains.registry import adapters_reading


def test_stats_on_dicom_series_with_image_names_the_reader(tmp_path, capsys):
    for k in range(2):
        (tmp_path / "series").mkdir(exist_ok=True)
        (tmp_path / "series" / f"IM{k}").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert main(["-q", "stats", "--adapter", "image", "--data", str(tmp_path / "series")]) == 2
    err = capsys.readouterr().err
    readers = adapters_reading("DICOM")  # the medical adapters, where installed
    assert err.startswith("error: no input files found") and "2 DICOM file(s)" in err
    expected = ("read them with adapter " + " or ".join(repr(n) for n in readers) if readers
                else "no installed adapter reads DICOM yet")
    assert expected in err


def test_stats_on_volumes_gives_each_reason_with_a_count(tmp_path, capsys):
    for k in range(3):
        tifffile.imwrite(tmp_path / f"vol{k}.tif", np.zeros((5, 8, 8), np.uint8), photometric="minisblack")
    assert main(["-q", "stats", "--adapter", "image", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "could not read any of the 3 sample(s) tried to compute normalization statistics (adapter image)" in err
    assert "3 x holds 5 gray planes" in err and str(tmp_path / "vol0.tif") in err
