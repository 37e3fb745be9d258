"""Normalization statistics: exact pooling, fill values and outlier samples left out, reasons for failures."""

from __future__ import annotations

import numpy as np
import pytest

from mae_domains.data.fill_values import fill_invalid
from mae_domains.data.pixel_limit import check_pixel_count
from mae_domains.data.read_failures import ReadFailures, StatsError
from mae_domains.data.sample import BadSampleError, RunningStats


def samples(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((3, 20, 24)) * (1 + k % 3) for k in range(count)]


def test_pooled_statistics_are_exact():
    images = samples(6)
    running = RunningStats(3)
    for image in images:
        running.update(image)
    stats = running.result()
    flat = np.concatenate([im.reshape(3, -1) for im in images], axis=1)
    assert np.allclose(stats.mean, flat.mean(axis=1), rtol=1e-12)
    assert np.allclose(stats.std, flat.std(axis=1), rtol=1e-12)
    assert stats.count == 6 and running.rejected == []


def test_float_fill_is_never_counted():
    """-3.4e38 (float32's lowest, a common undeclared nodata) made the mean -7.5e26 before."""
    images = samples(4)
    poisoned = images[0].astype(np.float32)
    poisoned[:, :5] = -3.4028235e38
    running = RunningStats(3)
    for image in [poisoned, *images[1:]]:
        running.update(image)
    stats = running.result()
    keep = np.concatenate([poisoned[:, 5:].reshape(3, -1)] + [im.reshape(3, -1) for im in images[1:]], axis=1)
    assert np.allclose(stats.mean, keep.mean(axis=1), rtol=1e-6)
    assert np.allclose(stats.std, keep.std(axis=1), rtol=1e-6)


def test_a_sample_far_outside_the_archive_is_left_out_and_named():
    images = samples(5)
    bad = images[2].copy()
    bad[:, 0, :3] = -9999.0  # 9 of 480 pixels: too few to be taken for a fill block, enough to poison
    running = RunningStats(3)
    for k, image in enumerate([*images[:2], bad, *images[3:]]):
        running.update(image, source=f"file{k}.tif")
    stats = running.result()
    good = [im for k, im in enumerate(images) if k != 2]
    flat = np.concatenate([im.reshape(3, -1) for im in good], axis=1)
    assert np.allclose(stats.mean, flat.mean(axis=1), rtol=1e-12)
    assert np.allclose(stats.std, flat.std(axis=1), rtol=1e-12)
    assert [src for src, _ in running.rejected] == ["file2.tif"] and stats.count == 4
    assert "far outside the archive's range" in running.rejected[0][1]


def test_fill_detection_needs_a_whole_pixel_block():
    image = np.ones((2, 10, 10), np.float32)
    image[:, :2] = -9999.0  # 20 % of the pixels, in every plane: a fill
    image[1, 5, 5] = np.nan  # one NaN in one plane: corruption, not nodata
    mask = fill_invalid(image)
    assert mask[:2].all() and not mask[2:].any()
    assert not fill_invalid(np.full((3, 4, 4), -9999, np.int16)).any()  # integer nodata must be declared
    huge = np.ones((1, 4, 4), np.float32)
    huge[0, 0, 0] = 3.0e38
    assert fill_invalid(huge).sum() == 1  # magnitude >= 1e30 is always nodata


def test_failures_are_grouped_by_reason_with_first_files():
    failures = ReadFailures()
    for k in range(4):
        failures.add(f"r{k}", BadSampleError(f"/a/vol{k}.tif", f"holds {k + 2} gray planes, not one image"))
    failures.add("x", BadSampleError("/a/scan.dcm", "is a DICOM file"))
    failures.add("y", OSError("disk gone"))
    text = str(StatsError("could not read any sample", failures))
    lines = text.splitlines()
    assert lines[0] == "could not read any sample; reasons:"
    assert lines[1] == "  4 x holds 2 gray planes, not one image (e.g. /a/vol0.tif, /a/vol1.tif, /a/vol2.tif)"
    assert "  1 x is a DICOM file (e.g. /a/scan.dcm)" in lines and "  1 x OSError: disk gone (e.g. y)" in lines


def test_pixel_limit_names_the_shape():
    check_pixel_count("ok.tif", (100, 100), 10_000)
    with pytest.raises(BadSampleError, match=r"big.tif: decoding it would produce 10,001 values .*data.max_pixels=10,000"):
        check_pixel_count("big.tif", (1, 10_001), 10_000)
