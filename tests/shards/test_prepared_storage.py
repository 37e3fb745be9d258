"""``prepare --dtype`` and ``--resolution``: what the shards hold, and that training reads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_domains.cli import main
from mae_domains.data.sample import Sample
from mae_domains.shards import PreparedArchive, prepare_archive
from mae_domains.shards.storage import at_resolution, restored_pixels, stored_pixels
from tests.engine.conftest import MICRO, make_config, write_pngs
from tests.shards.test_prepared_archive import batches


def stored_rows(shards) -> list[dict]:
    rows = PreparedArchive(shards).rows()
    return [rows[i] for i in range(rows.num_samples)]


def test_uint8_shards_of_8bit_photos_are_a_quarter_and_give_the_raw_batches(tmp_path):
    """8-bit PNGs read as float32 x/255 are stored as uint8 and come back bit for bit: the same batches as
    the files, from a quarter of the decoded bytes."""
    archive = tmp_path / "archive"
    write_pngs(archive, 12, seed=5, size=48)
    as_read = prepare_archive(make_config(archive), tmp_path / "as_read", workers=1, progress=False)
    small = prepare_archive(make_config(archive), tmp_path / "uint8", workers=1, progress=False, dtype="uint8")
    assert {r["image"].dtype for r in stored_rows(tmp_path / "as_read")} == {np.dtype(np.float32)}
    assert {r["image"].dtype for r in stored_rows(tmp_path / "uint8")} == {np.dtype(np.uint8)}
    raw, shards = batches(make_config(archive), 3), batches(make_config(tmp_path / "uint8"), 3)
    for a, b in zip(raw, shards):
        assert b["image"].dtype == torch.float32 and torch.equal(a["image"], b["image"])
    uncompressed = prepare_archive(make_config(archive), tmp_path / "uint8_none", workers=1, progress=False,
                                   dtype="uint8", compression="none")
    assert uncompressed.shard_bytes < 0.3 * uncompressed.decoded_bytes
    assert small.shard_bytes < as_read.shard_bytes


def test_float16_shards_are_read_as_float32_within_half_precision(tmp_path, capsys):
    archive = tmp_path / "archive"
    write_pngs(archive, 8, seed=1)
    shards = tmp_path / "shards"
    assert main(["-q", "prepare", "--adapter", "image", "--data", str(archive), "--out", str(shards), "--workers",
                 "1", "--dtype", "float16", *MICRO]) == 0
    rows = stored_rows(shards)
    assert {r["image"].dtype for r in rows} == {np.dtype(np.float16)}
    archive_reads = PreparedArchive(shards)
    from mae_domains.registry import get_adapter

    config = make_config(archive)
    adapter = get_adapter("image", {}).bind(config)
    for ref in archive_reads.refs:
        exact = adapter.read(ref.source).image
        got = archive_reads.read(ref).image
        assert got.dtype == np.float32 and np.allclose(got, exact, rtol=2**-11, atol=0)
    assert main(["-q", "pretrain", "--adapter", "image", "--data", str(shards), "--out", str(tmp_path / "run"),
                 "engine.max_steps=2", "engine.batch_size=4", *MICRO]) == 0


def test_stored_dtypes_restore_or_refuse():
    counts = np.array([[[0.0, 4095.0], [17.0, 300.0]]], np.float32)  # whole-number counts: kept as they are
    stored, divisor = stored_pixels(counts, "uint16", "a.tif")
    assert stored.dtype == np.uint16 and divisor is None
    assert np.array_equal(restored_pixels(stored, "<f4", divisor), counts)
    unit = (np.arange(65536, dtype=np.float32) / 65535.0).reshape(1, 256, 256)  # 16-bit pixels / their maximum
    stored, divisor = stored_pixels(unit, "uint16", "b.png")
    assert divisor == 65535.0 and restored_pixels(stored, "<f4", divisor).tobytes() == unit.tobytes()
    with pytest.raises(ValueError, match=r"c\.dcm: values -1000 to 400 are neither"):
        stored_pixels(np.array([[[-1000.0, 400.0]]], np.float32), "uint8", "c.dcm")
    with pytest.raises(ValueError, match=r"d\.tif: values up to 100000 exceed float16"):
        stored_pixels(np.array([[[1.0, 1e5]]], np.float32), "float16", "d.tif")


def test_resolution_shrinks_whole_images_and_scales_their_pixel_size(tmp_path):
    image = np.random.default_rng(0).random((1, 120, 200)).astype(np.float32)
    valid = np.ones((120, 200), bool)
    valid[:, :20] = False
    sample = Sample(image, {"source": "x.dcm", "spacing": [0.1, 0.2], "decoded_scale": 0.5}, valid)
    small = at_resolution(sample, 60)
    assert small.image.shape == (1, 60, 100) and small.image.dtype == np.float32
    assert np.allclose(small.image[0, 10, 20], image[0, 20:22, 40:42].mean(), atol=1e-6)  # area average
    assert small.valid.shape == (60, 100) and not small.valid[:, :10].any() and small.valid[:, 10:].all()
    assert small.meta["spacing"] == [0.2, 0.4] and small.meta["decoded_scale"] == 0.25
    assert small.meta["prepared_resolution"] == 60
    assert at_resolution(sample, 120) is sample  # never enlarged

    archive = tmp_path / "archive"
    write_pngs(archive, 6, size=80)
    shards = tmp_path / "shards"
    prepare_archive(make_config(archive), shards, workers=1, progress=False, resolution=40, dtype="uint8")
    assert {r["image"].shape for r in stored_rows(shards)} == {(3, 40, 40)}
    got = batches(make_config(shards), 2)
    assert got[0]["image"].shape == (4, 3, 32, 32)


@pytest.mark.parametrize("adapter, options, expected", [
    ("microscopy.channel_agnostic", ["--resolution", "300"], "reads windows at the model's size"),
    ("image", ["--resolution", "16"], "below model.img_size 32"),
])
def test_resolution_a_run_cannot_use_is_one_line_and_exit_2(tmp_path, capsys, adapter, options, expected):
    archive = tmp_path / "archive"
    write_pngs(archive, 2)
    code = main(["-q", "prepare", "--adapter", adapter, "--data", str(archive), "--out", str(tmp_path / "s"),
                 "--workers", "1", *options, *MICRO])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and expected in err
