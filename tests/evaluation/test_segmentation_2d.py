"""The 2D path of the ``segmentation`` protocol: Dice and IoU per image (MONAI), their means and bootstrap
intervals, and a channel-agnostic microscopy encoder run from a manifest of OME-TIFF tiles with instance masks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch

from mae_domains.evaluation.loading import LoadedCheckpoint
from mae_domains.evaluation.metrics import bootstrap_ci
from mae_domains.evaluation.runner import run_benchmark
from mae_domains.evaluation.segmentation import (
    LabelledVolume, SegmentationConfig, label_mean, mean_over_images, per_image_scores, training_crops,
)
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import write_ome_tiff


class Echo(torch.nn.Module):
    """Predicts the label map of the image it is given (stored in the image's second channel)."""

    def forward(self, x, meta=None):
        return torch.nn.functional.one_hot(x[:, 1].long(), 3).movedim(-1, 1).float()


def pair(truth: np.ndarray, prediction: np.ndarray, name: str) -> LabelledVolume:
    image = torch.stack([torch.zeros(truth.shape), torch.from_numpy(prediction).float()])
    return LabelledVolume(image, torch.from_numpy(truth).long(), None, name)


def test_dice_and_iou_per_image_over_sliding_windows_and_their_means():
    truth, pred = np.zeros((20, 24), np.int64), np.zeros((20, 24), np.int64)
    truth[2:6, 2:6], pred[2:6, 3:7] = 1, 1  # 16 and 16 px, 12 shared: Dice 24/32, IoU 12/20
    truth[10:14, 10:20], pred[10:14, 10:20] = 2, 2  # exact
    only_one = np.zeros((20, 24), np.int64)
    only_one[0:4, 0:4] = 1
    empty = np.zeros((20, 24), np.int64)
    volumes = [pair(truth, pred, "a"), pair(only_one, np.zeros_like(only_one), "b"), pair(empty, only_one, "c")]
    scores = per_image_scores(Echo(), volumes, 3, SegmentationConfig(roi=8, sw_overlap=0.25))
    np.testing.assert_allclose(scores["dice"][0], [0.75, 1.0])
    np.testing.assert_allclose(scores["iou"][0], [0.6, 1.0])
    np.testing.assert_allclose(scores["dice"][1], [0.0, np.nan])  # label 2 absent from the truth: left out
    assert np.isnan(scores["dice"][2]).all()  # empty truth: not scored, its false positives not counted
    np.testing.assert_allclose(mean_over_images(scores["dice"]), [0.375, 1.0])
    assert label_mean(scores["dice"]) == pytest.approx((0.375 + 1.0) / 2)
    assert label_mean(scores["iou"]) == pytest.approx((0.3 + 1.0) / 2)


def test_foreground_crops_come_from_the_few_labelled_images():
    volumes = [LabelledVolume(torch.zeros(1, 16, 16), torch.zeros(16, 16, dtype=torch.long), None, str(i))
               for i in range(10)]
    volumes[7].label[3:5, 3:5] = 1  # one slice in ten holds the tumour
    rng = np.random.default_rng(0)
    picks, crops = training_crops(volumes, [7], SegmentationConfig(batch_size=16, roi=8, fg_ratio=1.0), rng)
    assert picks == [7] * 16 and all(label.sum() == 4 for _, label in crops)  # centred on it: all 4 px inside
    picks, _ = training_crops(volumes, [7], SegmentationConfig(batch_size=64, roi=8, fg_ratio=0.0), rng)
    assert len(set(picks)) == 10  # background crops: every image


def write_tiles(root, count: int) -> list[tuple[str, str]]:
    """Bright discs (instance ids 1.. per tile) on a dim noisy background, 40 x 48 px OME-TIFF tiles."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48]
    pairs = []
    for t in range(count):
        mask = np.zeros((40, 48), np.uint16)
        for k in range(3):
            cy, cx = rng.uniform(6, 34), rng.uniform(6, 42)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(9, 25)] = k + 1
        image = (200 + 800 * (mask > 0) + rng.normal(0, 30, mask.shape)).astype(np.uint16)
        write_ome_tiff(root / f"t{t}.ome.tif", image[None], ["DNA"])
        tifffile.imwrite(root / f"t{t}_mask.tif", mask)
        pairs.append((f"t{t}.ome.tif", f"t{t}_mask.tif"))
    return pairs


def test_microscopy_tiles_from_a_manifest_give_dice_iou_intervals_and_per_image_rows(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    pairs = write_tiles(tmp_path, 6)
    with open(tmp_path / "seg.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "split"])
        writer.writerows((i, m, "train" if k < 3 else "test") for k, (i, m) in enumerate(pairs))
    adapter = make_adapter(32, normalize="percentile")
    seen = []
    grid_batch = adapter.grid_batch
    monkeypatch.setattr(adapter, "grid_batch", lambda batch, device: seen.append(batch["meta"]) or grid_batch(batch, device))
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    checkpoint = LoadedCheckpoint(name="tiny", checkpoint_id="tiny-0", adapter_name=adapter.name, adapter=adapter,
                                  model=model)
    spec = {"name": "nuclei", "seeds": [0],
            "checkpoints": [{"name": "tiny"}],
            "datasets": [{"name": "tiles", "manifest": "seg.csv", "mask_ids": "instances",
                          "classes": ["background", "nucleus"]}],
            "protocols": [{"name": "segmentation", "steps": 30, "batch_size": 4, "lr": 3.0e-3, "roi": 32}]}
    records = run_benchmark(spec, tmp_path / "out", load_checkpoint_fn=lambda entry, root, loaded: checkpoint,
                            root=tmp_path, plots=False)
    by = {(r.metric, r.class_name): r for r in records}
    assert set(by) == {("dice_mean", None), ("iou_mean", None), ("dice", "nucleus"), ("iou", "nucleus")}
    assert all(m[0]["channel_names"] == ["DNA"] for m in seen)  # the encoder sees the channel's name
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image" / "segmentation__tiny__tiles__seed0.csv")))
    assert [r["sample_id"] for r in rows] == ["t3.ome.tif", "t4.ome.tif", "t5.ome.tif"]
    for metric in ("dice", "iou"):
        per_image = np.array([[float(r[f"{metric}_nucleus"])] for r in rows])
        summary = by[(f"{metric}_mean", None)]
        assert summary.value == pytest.approx(per_image.mean()) and (summary.n_train, summary.n_test) == (3, 3)
        low, high = bootstrap_ci(label_mean, [per_image], 1000, 0.95, 0)  # test images resampled, seeded
        assert (summary.ci_low, summary.ci_high) == pytest.approx((low, high))
        assert low <= summary.value <= high and low < high
    assert by[("iou_mean", None)].value <= by[("dice_mean", None)].value


def test_label_mean_of_a_stack_of_resamples_is_each_resamples_label_mean():
    from mae_domains.evaluation.segmentation import label_mean

    nan = float("nan")
    stack = np.array([[[0.5, nan], [1.0, 0.2]], [[nan, nan], [0.0, nan]], [[nan, nan], [nan, nan]]])
    assert label_mean(stack[0]) == pytest.approx((0.75 + 0.2) / 2)
    stacked = label_mean(stack)
    assert stacked.shape == (3,)
    np.testing.assert_allclose(stacked[:2], [label_mean(stack[0]), label_mean(stack[1])])
    assert np.isnan(stacked[2]) and np.isnan(label_mean(stack[2]))
