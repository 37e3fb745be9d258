"""Bad input names the file and the cause; pretraining replaces bad chips and logs them in skipped.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from mae_domains.config import load_config
from mae_domains.data.dataset import ArchiveDataset
from mae_domains.data.sample import BadSampleError
from mae_domains.engine import pretrain
from mae_remote_sensing.synthetic import synthetic_scene
from tests.remote_sensing.conftest import MICRO, make_adapter
from tests.remote_sensing.rasters import write_raster

BANDS = ["B2", "B3", "B4", "B8"]


def good_scene(path, seed=0, size=48):
    image, _ = synthetic_scene(seed, BANDS, size, size, nodata_corner=False)
    return write_raster(path, image.astype(np.uint16), nodata=0, descriptions=BANDS)


def corrupt_file(path):
    good_scene(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:200] + b"\x00garbage" * 50)  # header torn: not a TIFF any more
    return path


def wrong_band_count(path):
    return write_raster(path, np.full((3, 48, 48), 500, np.uint16), nodata=0)


def all_nodata(path):
    return write_raster(path, np.zeros((4, 48, 48), np.uint16), nodata=0, descriptions=BANDS)


def missing_crs(path):
    return write_raster(path, np.full((4, 48, 48), 500, np.uint16), crs=None, descriptions=BANDS)


BAD = {"corrupt": (corrupt_file, "cannot open as a raster"),
       "bands": (wrong_band_count, "has 3 band(s) but data.options.file_bands lists 4"),
       "nodata": (all_nodata, "chip is all nodata"),
       "nocrs": (missing_crs, "has no CRS")}


def adapter_for_tests():
    return make_adapter("multispectral", groups=[BANDS], file_bands=BANDS, chips_per_scene=1)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_file_message_names_file_and_cause(tmp_path, kind):
    write, cause = BAD[kind]
    path = write(tmp_path / f"{kind}.tif")
    adapter = adapter_for_tests()
    (ref,) = adapter.discover([path])
    with pytest.raises(BadSampleError) as info:
        adapter.read(ref)
    assert str(path) in str(info.value) and cause in str(info.value)
    # the dataset turns it into a replacement, not a crash
    good = good_scene(tmp_path / "good.tif")
    refs = adapter.discover([path, good])
    item = ArchiveDataset(adapter, refs, None, train=True)[0 if refs[0].source == str(path) else 1]
    assert item["skipped"] and item["skipped"][0][0].startswith(str(path)) and cause in item["skipped"][0][1]


def test_mostly_invalid_chip_is_retried_then_rejected(tmp_path):
    data, _ = synthetic_scene(3, BANDS, 64, 64, nodata_corner=False)
    data = data.astype(np.uint16)
    data[:, :, :24] = 0  # the left three eighths are nodata
    path = write_raster(tmp_path / "edge.tif", data, nodata=0, descriptions=BANDS)
    adapter = make_adapter("multispectral", groups=[BANDS], chips_per_scene=8, jitter=0.0, min_valid_fraction=0.5)
    kept = 0
    for ref in adapter.discover([path]):
        try:
            sample = adapter.read(ref)
        except BadSampleError as err:
            assert "valid pixels" in str(err) or "all nodata" in str(err)
            continue
        kept += 1
        assert sample.valid.mean() >= 0.5
    assert kept > 0


def test_pretraining_replaces_and_logs_bad_files(tmp_path):
    archive = tmp_path / "archive"
    for i in range(8):
        good_scene(archive / f"good_{i}.tif", seed=i)
    bad_paths = [write(archive / f"bad_{kind}.tif") for kind, (write, _) in sorted(BAD.items())]
    config = load_config(None, ["adapter=remote_sensing.multispectral", "model.img_size=32", *MICRO,
                                "engine.batch_size=4", "engine.max_steps=3", "engine.log_every=1",
                                "engine.device=cpu", "data.num_workers=0", "data.max_bad_fraction=0.5",
                                "data.stats_samples=16"],
                         base={"data": {"sources": [str(archive)],
                                        "options": {"groups": [BANDS], "file_bands": BANDS, "chips_per_scene": 1}}})
    result = pretrain(config, tmp_path / "run")
    assert result.steps == 3 and np.isfinite(result.final_loss)
    with open(tmp_path / "run" / "skipped.csv") as fh:
        rows = list(csv.DictReader(fh))
    logged = {row["source"].split(" ")[0] for row in rows}
    assert logged and logged <= {str(p) for p in bad_paths}
    for row in rows:
        kind = row["source"].split("bad_")[1].split(".tif")[0]
        assert BAD[kind][1] in row["reason"]
