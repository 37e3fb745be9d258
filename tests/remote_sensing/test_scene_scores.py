"""Scene scores: IoU per class and mIoU of a class GeoTIFF against a truth GeoTIFF match a confusion
computed by hand; nodata and unpredicted pixels are ignored; the interval resamples spatial blocks,
seeded; a truth off the prediction's grid is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mae_domains.evaluation.scene_scores import BlockConfusion, class_names_of, mean_iou, score_rasters
from tests.remote_sensing.rasters import write_raster

TRUTH = np.array([[1, 1, 2, 2],
                  [1, 1, 2, 2],
                  [3, 3, 255, 2],
                  [3, 3, 3, 3]], np.uint8)
PRED = np.array([[1, 2, 2, 2],
                 [1, 1, 2, 255],  # no prediction (no scene data): not scored
                 [3, 1, 4, 2],  # class 4 predicted only where the truth has no label: not a class
                 [3, 3, 3, 3]], np.uint8)
# by hand: class 1 TP 3, FP 1 (row 2 col 1), FN 1 (row 0 col 1) -> 3/5; class 2 TP 4, FP 1 -> 4/5;
# class 3 TP 5, FN 1 -> 5/6
EXPECTED = {"developed": 3 / 5, "agriculture": 4 / 5, "class_3": 5 / 6}
NAMES = json.dumps({"1": "developed", "2": "agriculture"})


def rasters(tmp_path, truth=TRUTH, pred=PRED, origin=(600000.0, 5900000.0)):
    truth_path = write_raster(tmp_path / "truth.tif", truth, nodata=255, origin=(600000.0, 5900000.0),
                              tags={"classes": NAMES})
    pred_path = write_raster(tmp_path / "pred.tif", pred, nodata=255, origin=origin)
    return pred_path, truth_path


def test_iou_per_class_and_miou_match_the_confusion_computed_by_hand(tmp_path):
    pred, truth = rasters(tmp_path)
    scores = score_rasters([(pred, truth)], block=2, seed=0)
    assert scores.iou_by_name() == pytest.approx(EXPECTED)
    assert scores.miou == pytest.approx(np.mean(list(EXPECTED.values())))
    assert scores.scored_pixels == 14 and scores.unpredicted_pixels == 1
    assert scores.classes == [1, 2, 3]
    np.testing.assert_array_equal(scores.confusion, [[3, 1, 0], [0, 4, 0], [1, 0, 5]])
    assert class_names_of(truth) == {1: "developed", 2: "agriculture"}
    assert scores.blocks == 4 and scores.ci_low <= scores.miou <= scores.ci_high
    data = scores.to_dict()
    assert data["iou"]["class_3"] == pytest.approx(5 / 6) and data["pixels"]["developed"] == {"truth": 4, "predicted": 4}


def test_a_class_absent_from_truth_and_prediction_is_not_averaged_and_one_missed_counts_zero(tmp_path):
    truth = np.array([[1, 1], [2, 2]], np.uint8)
    pred = np.array([[1, 1], [1, 1]], np.uint8)  # class 2 never predicted: IoU 0; class 1: 2 / 4
    scores = score_rasters([rasters(tmp_path, truth, pred)], block=1, resamples=0)
    assert scores.iou_by_name() == {"developed": 0.5, "agriculture": 0.0} and scores.miou == 0.25
    assert np.isnan(scores.ci_low) and scores.resamples == 0


def test_counts_do_not_depend_on_the_windows_they_arrive_in():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 5, (40, 52)), rng.integers(0, 5, (40, 52))
    labelled = rng.random((40, 52)) > 0.2
    whole = BlockConfusion(8)
    whole.add(0, 0, 0, truth, labelled, pred)
    tiled = BlockConfusion(8)
    for r, c, h, w in [(24, 30, 16, 22), (0, 0, 24, 30), (0, 30, 24, 22), (24, 0, 16, 30)]:  # any order, unaligned
        tiled.add(0, r, c, truth[r:r + h, c:c + w], labelled[r:r + h, c:c + w], pred[r:r + h, c:c + w])
    (classes_a, blocks_a), (classes_b, blocks_b) = whole.per_block(), tiled.per_block()
    assert classes_a == classes_b and blocks_a.shape == (5 * 7, 5, 5)
    np.testing.assert_array_equal(blocks_a, blocks_b)  # blocks in (scene, row, column) order
    assert whole.scores(resamples=50).ci_low == tiled.scores(resamples=50).ci_low


def test_the_interval_resamples_spatial_blocks_not_pixels_and_is_seeded():
    """Errors clustered in space: a 16 px block bootstrap is much wider than a pixel bootstrap."""
    size = 128
    truth = np.zeros((size, size), np.int64)
    truth[:, size // 2:] = 1
    pred = truth.copy()
    rng = np.random.default_rng(1)
    for r in range(0, size, 16):  # a quarter of the 16 px blocks predicted all wrong
        for c in range(0, size, 16):
            if rng.random() < 0.25:
                pred[r:r + 16, c:c + 16] = 1 - truth[r:r + 16, c:c + 16]
    labelled = np.ones_like(truth, bool)

    def scored(block, seed=0):
        counts = BlockConfusion(block)
        counts.add(0, 0, 0, truth, labelled, pred)
        return counts.scores(resamples=300, seed=seed)

    blocks, pixels = scored(16), scored(1)
    assert blocks.miou == pixels.miou == pytest.approx(mean_iou(blocks.confusion))
    assert blocks.blocks == 64 and pixels.blocks == size * size
    assert blocks.ci_high - blocks.ci_low > 5 * (pixels.ci_high - pixels.ci_low)
    assert (scored(16).ci_low, scored(16).ci_high) == (blocks.ci_low, blocks.ci_high)
    assert scored(16, seed=1).ci_low != blocks.ci_low


def test_truth_off_the_prediction_grid_is_a_one_line_error(tmp_path):
    pred, truth = rasters(tmp_path, origin=(600010.0, 5900000.0))
    with pytest.raises(ValueError, match="truth.tif: truth raster is not on the grid of .*pred.tif") as err:
        score_rasters([(pred, truth)])
    assert "\n" not in str(err.value)


def test_nothing_to_score_is_an_error_not_a_zero(tmp_path):
    empty = np.full((4, 4), 255, np.uint8)
    with pytest.raises(ValueError, match="no pixel to score"):
        score_rasters([rasters(tmp_path, empty, PRED)])
