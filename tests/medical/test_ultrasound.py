"""``medical.ultrasound``: the deblurring MAE (blurred input, sharp target, loss on all patches) and the scan
region (DICOM ultrasound regions, a user mask, an automatic estimate) as the validity mask."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mae_domains.cli import main
from mae_domains.config import load_config
from mae_domains.data.dataset import collate_items
from mae_domains.data.sample import BadSampleError, NormStats
from mae_domains.registry import get_adapter
from mae_domains.testing import assert_adapter_conforms
from mae_medical import UltrasoundAdapter
from mae_medical.blur import gaussian_blur
from mae_medical.scan_region import estimate_region
from mae_medical.synthetic import ultrasound_frame
from tests.medical import dicom_files as F

MICRO = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
         "model.decoder_depth=1", "model.decoder_num_heads=4", "engine.device=cpu", "data.num_workers=0"]


def bound_ultrasound(*overrides: str) -> UltrasoundAdapter:
    config = load_config(None, ["adapter=medical.ultrasound", *MICRO, *overrides])
    return get_adapter("medical.ultrasound", config.data.options).bind(config)


def speckle(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, (rows, cols)).astype(np.uint8)


@pytest.mark.parametrize("sigma", [1.1, 2.0])
def test_blur_is_opencvs_gaussian(sigma):
    image = np.random.default_rng(0).random((20, 24)).astype(np.float32)
    expected = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    ours = gaussian_blur(torch.from_numpy(image)[None, None], sigma)[0, 0].numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert torch.equal(gaussian_blur(torch.ones(1, 1, 4, 4), 0.0), torch.ones(1, 1, 4, 4))


def test_encoder_sees_the_blurred_image_and_the_target_is_sharp():
    adapter = bound_ultrasound()
    images = torch.rand(2, 1, 32, 32)
    grid = adapter.grid_batch({"image": images, "valid": torch.ones(2, 32, 32, dtype=torch.bool)}, torch.device("cpu"))
    assert torch.equal(grid.target_images, images)
    assert torch.allclose(grid.images, gaussian_blur(images, 1.1))
    assert not torch.allclose(grid.images, images, atol=1e-3)
    sharp = bound_ultrasound("data.options.blur_sigma=0.0").grid_batch({"image": images}, torch.device("cpu"))
    assert torch.equal(sharp.images, images)


def test_loss_covers_all_valid_patches_visible_ones_too():
    adapter = bound_ultrasound()
    assert adapter.config.model.query == "all" and adapter.config.mask.ratio == 0.75
    model = adapter.build_model(adapter.config.model, adapter.config.mask).eval()
    samples = [adapter.transform(adapter.synthetic_sample(s), s, True, NormStats([0.3], [0.2])) for s in (0, 1)]
    items = [{"image": torch.from_numpy(s.image), "valid": torch.from_numpy(s.valid), "mask_seed": 7 + k,
              "meta": s.meta, "skipped": []} for k, s in enumerate(samples)]
    batch = collate_items(items)
    with torch.no_grad():
        out = model(**adapter.model_inputs(batch, torch.device("cpu")))
    n = out.mask.shape[1]
    assert out.query_ids.shape == (2, n)  # every token decoded
    visible_and_scored = (out.mask == 0) & (out.token_weight > 0)
    assert visible_and_scored.any()  # visible tokens count in the loss
    # the loss is the mean over tokens with valid pixels of each token's valid-pixel MSE, masked or not
    err = ((out.pred - out.target) ** 2 * out.weight).sum(-1) / out.weight.sum(-1).clamp_min(1e-12)
    counted = out.weight.sum(-1) > 0
    assert torch.allclose(out.loss, err[counted].mean(), rtol=1e-5)
    # tokens wholly outside the scan region are hidden from the encoder and never scored
    outside = ~counted
    assert outside.any() and torch.all(out.mask[outside] == 1) and torch.all(out.token_weight[outside] == 0)


def test_scan_region_from_ultrasound_regions(tmp_path):
    image = speckle(40, 60)
    image[:3, :20] = 255  # burned-in text above the region
    path = F.rgb_ultrasound(tmp_path / "us.dcm", image, boxes=[(10, 5, 49, 34, 1), (0, 36, 59, 39, 3)])
    sample = UltrasoundAdapter().read(path)
    expected = np.zeros((40, 60), bool)
    expected[5:35, 10:50] = True  # inclusive corners; the spectral (format 3) region is not a 2D image
    assert np.array_equal(sample.valid, expected)
    np.testing.assert_allclose(sample.image[0], image / 255.0, atol=1e-6)
    assert sample.meta["scan_region"] == "dicom"


def test_statistics_and_inputs_ignore_pixels_outside_the_region(tmp_path):
    images = []
    for k in range(3):
        image = speckle(40, 60, seed=k)
        image[:4, :] = 255  # annotations outside the region
        images.append(image)
        F.rgb_ultrasound(tmp_path / f"us{k}.dcm", image, boxes=[(0, 8, 59, 39, 1)])
    adapter = UltrasoundAdapter()
    stats = adapter.compute_stats(adapter.discover([tmp_path]))
    inside = np.concatenate([im[8:].ravel() / 255.0 for im in images])
    assert stats.mean[0] == pytest.approx(inside.mean(), abs=1e-6)
    assert stats.std[0] == pytest.approx(inside.std(), abs=1e-6)
    out = bound_ultrasound().transform(adapter.read(tmp_path / "us0.dcm"), 0, False, None)
    assert out.valid.shape == (32, 32) and not out.valid.all() and out.valid.any()
    assert np.all(out.image[0][~out.valid] == 0.0)


def test_user_mask_image_and_a_mask_of_the_wrong_size(tmp_path):
    image = speckle(30, 40)
    Image.fromarray(image).save(tmp_path / "frame.png")
    mask = np.zeros((30, 40), np.uint8)
    mask[5:25, 8:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    sample = UltrasoundAdapter({"region_mask": str(tmp_path / "mask.png")}).read(tmp_path / "frame.png")
    assert np.array_equal(sample.valid, mask > 0) and sample.meta["scan_region"] == "mask"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(BadSampleError) as err:
        UltrasoundAdapter({"region_mask": str(tmp_path / "small.png")}).read(tmp_path / "frame.png")
    assert str(err.value) == (f"{tmp_path / 'frame.png'}: scan-region mask {tmp_path / 'small.png'} is 20 x 20 "
                              "pixels but the frame is 40 x 30")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(mask).save(masks / "frame.png")  # a folder: one mask per file name
    assert np.array_equal(UltrasoundAdapter({"region_mask": str(masks)}).read(tmp_path / "frame.png").valid, mask > 0)
    with pytest.raises(FileNotFoundError, match="region_mask .*nowhere: no such file"):
        UltrasoundAdapter({"region_mask": str(tmp_path / "nowhere")})


def test_automatic_estimate_finds_the_sector_and_leaves_out_annotations(tmp_path):
    image, sector = ultrasound_frame(0, 128, 160)
    region = estimate_region(image)
    assert (region & sector).sum() / (region | sector).sum() > 0.9
    annotations = (image > 0.85) & ~sector
    assert annotations.sum() > 50 and not (region & annotations).any()
    assert estimate_region(np.zeros((64, 64), np.float32)) is None
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp_path / "export.png")
    sample = UltrasoundAdapter().read(tmp_path / "export.png")  # no DICOM regions, no mask: the estimate
    assert sample.meta["scan_region"] == "estimate"
    assert (sample.valid & sector).sum() / (sample.valid | sector).sum() > 0.9


def curvilinear_frame(gap: int, seed: int = 0, h: int = 480, w: int = 640):
    """A 640 x 480 convex-probe export as scanners burn it: two rows of study text at the top (the second
    ``gap`` pixels above the scan), a grey-scale bar and a power bar ``gap`` pixels beside the scan, dark
    speckle (about a fifth of the scan's pixels below the threshold) and an anechoic cyst.
    Returns ``(gray, scan, text, bars)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    apex_y, apex_x, r_in, r_out = 70 - 120, w / 2, 120, 500  # virtual apex above the image
    radius, angle = np.hypot(yy - apex_y, xx - apex_x), np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    scan = (radius >= r_in) & (radius <= r_out) & (np.abs(angle) <= 32)
    tissue = rng.rayleigh(0.12, (h, w)) * np.linspace(1.0, 0.5, h)[:, None]
    tissue[((yy - 250) / 50) ** 2 + ((xx - 300) / 70) ** 2 <= 1] = 0.01
    gray = np.where(scan, tissue, 0.0)
    text = np.zeros((h, w), np.uint8)
    top = int(np.nonzero(scan.any(axis=1))[0].min())
    cv2.putText(text, "ST MARY HOSPITAL   ID 0012345   MI 1.2  TIs 0.4", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)
    cv2.putText(text, "ABD C5-1   12/06/2026 10:41   18Hz  16cm", (8, top - gap), cv2.FONT_HERSHEY_SIMPLEX,
                0.7, 255, 2)
    cols = np.nonzero(scan.any(axis=0))[0]
    left, right = slice(cols.min() - gap - 16, cols.min() - gap), slice(cols.max() + gap + 1, cols.max() + gap + 15)
    bars = np.zeros((h, w), bool)
    bars[120:400, left] = bars[100:420, right] = True
    gray[120:400, left] = np.linspace(1.0, 0.1, 280)[:, None]  # grey-scale bar
    gray[100:420, right] = 0.75  # acoustic power bar
    gray = np.where(text > 0, 1.0, gray)
    return np.clip(gray, 0, 1).astype(np.float32), scan, text > 0, bars


def test_estimate_leaves_out_top_text_rows_and_side_bars_next_to_the_scan(tmp_path):
    """The estimate used to keep study text rows and power bars within a few pixels of the scan as
    valid pixels (a third of the 'region' was annotation); now the region is the scan, and the preview
    draws the rows and bars outside it (magenta)."""
    for gap in (3, 12):
        gray, scan, text, bars = curvilinear_frame(gap)
        region = estimate_region(gray)
        assert (region & scan).sum() / (region | scan).sum() > 0.97, gap
        assert not (region & text).any() and not (region & bars).any(), gap
    Image.fromarray(np.round(gray * 255).astype(np.uint8)).save(tmp_path / "export.png")
    out = tmp_path / "inspect"
    assert main(["-q", "inspect", "--adapter", "medical.ultrasound", str(tmp_path / "export.png"),
                 "--out", str(out)]) == 0
    report = json.loads((out / "sample.json").read_text())
    assert report["meta"]["scan_region"] == "estimate"
    assert report["valid_fraction"] == pytest.approx(scan.mean(), abs=0.01)
    with Image.open(out / "preview.png") as png:
        picture = np.asarray(png.convert("RGB")).astype(int)
    magenta = (picture[..., 0] > 200) & (picture[..., 1] < 60) & (picture[..., 2] > 200)
    assert magenta.mean() > 0.2  # the outside, text rows included, is drawn magenta


def test_multiframe_colour_cine_gives_one_sample_per_frame(tmp_path):
    path = F.rgb_ultrasound(tmp_path / "cine.dcm", speckle(24, 32), boxes=[(2, 2, 29, 21, 1)], frames=3)
    adapter = UltrasoundAdapter()
    refs = adapter.discover([path])
    assert [r.frame for r in refs] == [0, 1, 2]
    sample = adapter.read(refs[2])
    assert sample.valid[2:22, 2:30].all() and sample.valid.sum() == 20 * 28


def test_inspect_shows_the_scan_region(tmp_path):
    path = F.rgb_ultrasound(tmp_path / "us.dcm", speckle(40, 60), boxes=[(10, 5, 49, 34, 1)])
    out = tmp_path / "inspect"
    assert main(["-q", "inspect", "--adapter", "medical.ultrasound", str(path), "--out", str(out)]) == 0
    report = json.loads((out / "sample.json").read_text())
    assert report["valid_mask"] and report["valid_fraction"] == pytest.approx(30 * 40 / (40 * 60))
    assert report["meta"]["scan_region"] == "dicom"
    with Image.open(out / "preview.png") as png:
        picture = np.asarray(png.convert("RGB"))
    assert ((picture[..., 0] > 200) & (picture[..., 1] < 60) & (picture[..., 2] > 200)).any()  # outside: magenta


@pytest.mark.slow
def test_ultrasound_adapter_conforms():
    assert_adapter_conforms("medical.ultrasound")


@pytest.mark.slow
def test_pretraining_lists_frames_whose_mask_does_not_fit(tmp_path, capsys):
    archive = tmp_path / "archive"
    for k in range(4):
        F.rgb_ultrasound(archive / f"us{k}.dcm", speckle(48, 64, seed=k), boxes=[(4, 4, 59, 43, 1)])
    Image.fromarray(speckle(30, 30)).save(archive / "other_device.png")  # needs the mask, which is 64 x 48
    mask = np.zeros((48, 64), np.uint8)
    mask[4:44, 4:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    run = tmp_path / "run"
    code = main(["-q", "pretrain", "--adapter", "medical.ultrasound", "--data", str(archive), "--out", str(run),
                 *MICRO, "engine.batch_size=5", "engine.max_steps=1", "data.stats_samples=5",
                 "data.max_bad_fraction=0.5", f"data.options.region_mask={tmp_path / 'mask.png'}",
                 "engine.figure_every=1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with open(run / "skipped.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["source"].rsplit("/", 1)[-1] for row in rows] == ["other_device.png"]
    reason = rows[0]["reason"]
    assert reason.startswith("scan-region mask") and "is 64 x 48 pixels but the frame is 30 x 30" in reason
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["query"] == "all" and config["model"]["in_chans"] == 1
    assert list(run.rglob("*.png"))  # the reconstruction figure
