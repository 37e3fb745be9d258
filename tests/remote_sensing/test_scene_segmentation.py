"""Scene segmentation: the GeoTIFF written has the scene's CRS, transform and size; each pixel equals a
direct inference on its tile's window read plainly from the file; nodata stays nodata; the CLI trains,
saves, reloads and segments (slow)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
import torch

from mae_domains.data.sample import NormStats
from mae_domains.evaluation.scene_segmentation import (
    NODATA_CLASS, LabelledScene, SceneSegmentationConfig, SceneSegmenter, finetune_scene_segmenter, segment_scene,
    tile_plan,
)
from tests.remote_sensing.conftest import MICRO, make_adapter
from tests.remote_sensing.rasters import write_raster

BANDS = ["B2", "B3", "B4", "B8"]
SPECTRA = np.array([[700, 600, 300, 100], [300, 600, 300, 4200], [1300, 1500, 1700, 2100]], np.float32)  # water, forest, urban


def write_scene(folder, height=72, width=88, seed=0):
    """A scene of three land-cover classes (stripes and a block) with a nodata corner, and its labels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    labels = np.where(cols < width // 3, 0, 1).astype(np.uint8)
    labels[(rows > height // 2) & (cols > width // 2)] = 2
    data = SPECTRA[labels].transpose(2, 0, 1) * rng.uniform(0.9, 1.1, (4, height, width))
    data = data.astype(np.uint16)
    data[:, :6, :10] = 0  # nodata corner
    labels[:6, :10] = 255
    scene = write_raster(folder / "scene.tif", data, nodata=0, descriptions=BANDS, origin=(600000.0, 5900000.0))
    label = write_raster(folder / "labels.tif", labels, nodata=255, origin=(600000.0, 5900000.0))
    return scene, label


def setup(tmp_path):
    scene, label = write_scene(tmp_path)
    adapter = make_adapter("multispectral", img_size=32, bands=BANDS, groups=[BANDS])
    torch.manual_seed(0)
    mae = adapter.build_model(adapter.config.model, adapter.config.mask)
    stats = NormStats(mean=SPECTRA.mean(0).tolist(), std=SPECTRA.std(0).tolist())
    return scene, label, adapter, mae, stats


def test_tile_plan_partitions_the_scene():
    tiles = tile_plan(50, 70, 32, 8)
    cover = np.zeros((50, 70), int)
    for t in tiles:
        r, c, h, w = t.keep
        cover[r:r + h, c:c + w] += 1
        assert t.read[2:] == (32, 32) and t.offset == (4, 4)
    assert (cover == 1).all()


def test_segmentation_geotiff_matches_the_scene_grid_and_direct_inference(tmp_path):
    scene, label, adapter, mae, stats = setup(tmp_path)
    reader = adapter.open_scene(scene, stats)
    config = SceneSegmentationConfig(steps=3, batch_size=2).resolved(32, 8)
    assert (config.tile, config.overlap) == (32, 8)
    model = finetune_scene_segmenter(mae.encoder, adapter, [LabelledScene(reader, str(label))], 3, config, 0,
                                     torch.device("cpu"))
    out = tmp_path / "classes.tif"
    summary = segment_scene(model, adapter, reader, out, config, torch.device("cpu"), ["water", "forest", "urban"])
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.height, dst.width) == (src.height, src.width) and dst.count == 1
        assert dst.dtypes[0] == "uint8" and dst.nodata == NODATA_CLASS
        assert dst.profile["tiled"] and dst.compression.name.lower() == "deflate"
        classes = dst.read(1)
        raw = src.read().astype(np.float32)
    assert summary["tiles"] == len(tile_plan(72, 88, 32, 8))
    assert (classes[:6, :10] == NODATA_CLASS).all() and (classes[6:, 10:] < 3).all()
    # every tile's kept part equals the model applied directly to that window of the file
    mean, std = np.asarray(stats.mean, np.float32)[:, None, None], np.asarray(stats.std, np.float32)[:, None, None]
    for t in tile_plan(72, 88, 32, 8):
        r, c, h, w = t.read
        window = np.zeros((4, h, w), np.float32) + mean  # outside the scene: the band mean (normalized 0)
        rr, cc = slice(max(r, 0), min(r + h, 72)), slice(max(c, 0), min(c + w, 88))
        window[:, rr.start - r:rr.stop - r, cc.start - c:cc.stop - c] = raw[:, rr, cc]
        window = np.where(window == 0, mean, window)  # nodata pixels: the band mean
        with torch.no_grad():
            direct = model(torch.from_numpy((window - mean) / std)[None],
                           adapter.batch_meta({"meta": [reader.meta]}, torch.device("cpu"))).argmax(1)[0].numpy()
        (r0, c0), (kr, kc, kh, kw) = t.offset, t.keep
        got = classes[kr:kr + kh, kc:kc + kw]
        expected = direct[r0:r0 + kh, c0:c0 + kw]
        inside = got != NODATA_CLASS
        np.testing.assert_array_equal(got[inside], expected[inside])


def test_label_raster_off_the_grid_is_a_one_line_error(tmp_path):
    from mae_domains.evaluation.scene_segmentation import check_label_grid

    scene, _, adapter, _, stats = setup(tmp_path)
    shifted = write_raster(tmp_path / "shifted.tif", np.zeros((72, 88), np.uint8), origin=(600010.0, 5900000.0))
    with pytest.raises(ValueError, match="not on the grid") as err:
        check_label_grid(LabelledScene(adapter.open_scene(scene, stats), str(shifted)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["multispectral", "scale"])
def test_segmenter_on_band_groups_and_gsd_scaled_grids(name):
    options = {"groups": [BANDS[:2], BANDS[2:]]} if name == "multispectral" else {}
    adapter = make_adapter(name, img_size=32, bands=BANDS, **options)
    mae = adapter.build_model(adapter.config.model, adapter.config.mask)
    meta = {"spacing": torch.tensor([[10.0, 10.0], [20.0, 20.0]], dtype=torch.float64)}
    logits = SceneSegmenter(mae.encoder, 3, in_chans=4)(torch.randn(2, 4, 32, 32), meta)
    assert logits.shape == (2, 3, 32, 32) and torch.isfinite(logits).all()


def test_saved_segmenter_files_have_ordinary_permissions(tmp_path):
    """Like exports: 0666 less the umask (safetensors writes 0600, unreadable to the rest of a group)."""
    import os

    from mae_domains.evaluation.scene_segmentation import load_segmenter_weights, read_segmenter_info, save_segmenter

    adapter = make_adapter("scale", img_size=32, bands=BANDS)
    mae = adapter.build_model(adapter.config.model, adapter.config.mask)
    segmenter = SceneSegmenter(mae.encoder, 3, in_chans=4)
    old = os.umask(0o022)
    try:
        folder = save_segmenter(segmenter, tmp_path / "seg", tmp_path / "run", 3,
                                SceneSegmentationConfig().resolved(32, 8))
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {
        "segmenter.safetensors": "0o644", "segmenter.json": "0o644"}
    loaded = load_segmenter_weights(mae.encoder, folder, read_segmenter_info(folder), 4, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), segmenter.state_dict().values()))


def test_time_series_runs_are_refused(tmp_path):
    scene, _ = write_scene(tmp_path)
    with pytest.raises(ValueError, match="single-date scenes"):
        make_adapter("temporal", img_size=32, bands=BANDS).open_scene(scene, None)


def pretrain_tiny_run(tmp_path, steps=2):
    from mae_domains.cli import main

    archive = tmp_path / "archive"
    for i in range(4):
        write_scene(archive / f"s{i}", seed=i + 1)[1].unlink()  # imagery only
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--adapter", "remote_sensing.multispectral", "--data", str(archive), "--out", str(run),
                 "model.img_size=32", *MICRO, "engine.batch_size=4", f"engine.max_steps={steps}", "engine.device=cpu",
                 "data.num_workers=0", "data.stats_samples=8", f"data.options.bands={BANDS}",
                 f"data.options.groups={[BANDS]}"]) == 0
    return run


def test_cli_truth_off_the_scene_grid_or_one_short_is_one_line_and_exit_2_before_training(tmp_path, capsys):
    from mae_domains.cli import main

    run = pretrain_tiny_run(tmp_path, steps=1)
    scene, label = write_scene(tmp_path / "data")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"image,label\n{scene},{label}\n")
    shifted = write_raster(tmp_path / "shifted.tif", np.zeros((72, 88), np.uint8), nodata=255,
                           origin=(600028.5, 5900000.0))
    out = tmp_path / "out" / "classes.tif"
    capsys.readouterr()
    assert main(["segment", "--run", str(run), str(scene), "--out", str(out), "--train", str(pairs),
                 "--truth", str(shifted), "steps=1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "shifted.tif: label raster is not on the grid of" in err
    assert len(err.splitlines()) == 1 and not out.with_suffix(".segmenter").exists()  # refused before training
    assert main(["segment", "--run", str(run), str(scene), str(scene), "--out", str(tmp_path / "many"),
                 "--train", str(pairs), "--truth", str(label), "steps=1", "--device", "cpu"]) == 2
    assert "--truth: give one truth raster per scene (1 for 2 scenes)" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_saves_and_segments(tmp_path):
    from mae_domains.cli import main
    from mae_domains.evaluation.scene_scores import iou_per_class

    scene, label = write_scene(tmp_path / "data")
    with rasterio.open(label, "r+") as dst:
        dst.update_tags(classes='["water", "forest", "urban"]')
    run = pretrain_tiny_run(tmp_path)
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as fh:
        csv.writer(fh).writerows([["image", "label"], [str(scene), str(label)]])
    out = tmp_path / "out" / "classes.tif"
    assert main(["-q", "segment", str(run), str(scene), "--out", str(out), "--train", str(pairs),
                 "--set", "steps=40", "batch_size=4", "overlap=8", "--device", "cpu"]) == 0
    segmenter = out.with_suffix(".segmenter")
    again = tmp_path / "again.tif"
    assert main(["-q", "segment", str(segmenter), str(scene), "--out", str(again), "--device", "cpu",
                 "--truth", str(label), "bootstrap_block=16"]) == 0
    with rasterio.open(out) as a, rasterio.open(again) as b, rasterio.open(label) as truth:
        first, second, labels = a.read(1), b.read(1), truth.read(1)
        assert a.crs == truth.crs and a.transform == truth.transform
        assert json.loads(a.tags()["classes"]) == ["water", "forest", "urban"]  # from the training labels' tag
    np.testing.assert_array_equal(first, second)  # the saved segmenter reproduces the first prediction
    known = labels != 255
    assert (first[known] == labels[known]).mean() > 0.6  # three spectrally distinct classes
    scored = known & (second != 255)
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (labels[scored], second[scored]), 1)
    scores = json.loads(again.with_suffix(".scores.json").read_text())
    iou = iou_per_class(confusion)
    assert scores["iou"] == pytest.approx({"water": iou[0], "forest": iou[1], "urban": iou[2]})
    assert scores["miou"] == pytest.approx(iou.mean()) and scores["ci_low"] <= scores["miou"] <= scores["ci_high"]
    assert scores["scored_pixels"] == scored.sum() and scores["bootstrap"]["blocks"] == 5 * 6
    assert main(["-q", "segment", str(run), str(scene), "--out", str(again)]) == 2  # no head, no --train
