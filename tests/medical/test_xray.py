"""``medical.xray``: recipe, transforms, checkpoint loading, ``inspect`` on DICOM, and pretraining through the
command line on an archive with bad files."""

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
from mae_domains.data.sample import NormStats
from mae_domains.testing.reference_mae import MAEConfig, MaskedAutoencoder
from mae_domains.registry import get_adapter
from mae_domains.testing import assert_adapter_conforms
from mae_domains.weights import load_mae_checkpoint
from mae_medical import XrayAdapter
from tests.medical import dicom_files as F
from tests.test_weights import write_original_checkpoint

MICRO = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
         "model.decoder_depth=1", "model.decoder_num_heads=4", "engine.device=cpu", "data.num_workers=0"]


def bound_xray(*overrides: str) -> XrayAdapter:
    config = load_config(None, ["adapter=medical.xray", *MICRO, *overrides])
    return get_adapter("medical.xray", config.data.options).bind(config)


def test_recipe_defaults():
    adapter = bound_xray()
    assert adapter.config.mask.ratio == 0.90 and adapter.config.model.in_chans == 1
    steps = adapter.pipeline(True).transforms
    assert [type(s).__name__ for s in steps] == ["RandomResizedCrop", "HorizontalFlip"]
    assert tuple(steps[0].scale) == (0.5, 1.0)
    for name in ("medical_xray_vit_small", "medical_xray_vit_base"):
        recipe = load_config(f"configs/{name}.yaml", [])
        assert recipe.adapter == "medical.xray" and recipe.mask.ratio == 0.9
        assert recipe.model.patch_size == 16 and recipe.model.in_chans == 1
        assert recipe.data.options["crop_scale"] == [0.5, 1.0]
    assert load_config("configs/medical_xray_vit_small.yaml", []).model.preset == "small"
    assert load_config("configs/medical_xray_vit_base.yaml", []).model.preset == "base"


def test_evaluation_transform_and_normalization_values():
    adapter = bound_xray()
    image = F.ramp(64, 48, 0, 1000).astype(np.float32) / 1000.0
    stats = NormStats([0.25], [0.5])
    out = adapter.transform(adapter.synthetic_sample(0).__class__(image[None], {"source": "x"}), 0, False, stats)
    resized = cv2.resize(image, (32, 43), interpolation=cv2.INTER_AREA)  # shorter side to 32, area averaging
    top = (43 - 32) // 2
    np.testing.assert_allclose(out.image[0], (np.clip(resized[top:top + 32], 0, 1) - 0.25) / 0.5, atol=1e-5)


def test_training_crop_is_seeded_and_within_the_scale():
    adapter = bound_xray()
    sample = adapter.synthetic_sample(3)
    a = adapter.transform(sample, 11, True, None).image
    assert np.array_equal(a, adapter.transform(sample, 11, True, None).image)
    assert a.shape == (1, 32, 32) and a.dtype == np.float32
    assert not np.array_equal(a, adapter.transform(sample, 12, True, None).image)


def test_imagenet_mae_checkpoint_loads_into_the_one_channel_model(tmp_path):
    torch.manual_seed(0)
    rgb_mae = MaskedAutoencoder(MAEConfig(preset="micro", img_size=32, patch_size=8, decoder_embed_dim=32,
                                          decoder_depth=1, decoder_num_heads=4)).eval()
    path = tmp_path / "mae_pretrain_vit_micro.pth"
    write_original_checkpoint(rgb_mae, path)
    adapter = bound_xray()
    model = adapter.build_model(adapter.config.model, adapter.config.mask).eval()
    assert load_mae_checkpoint(model, path) == {"missing": [], "unexpected": []}
    weight = model.encoder.embedding.proj.weight
    assert weight.shape[1] == 1
    assert torch.allclose(weight, rgb_mae.encoder.patch_embed.proj.weight.sum(dim=1, keepdim=True), atol=1e-6)
    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        ours = model.encoder.forward_features(gray)
        theirs = rgb_mae.encoder.forward_features(gray.repeat(1, 3, 1, 1))
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_inspect_shows_the_viewers_image(tmp_path, capsys):
    path, stored, first, table = F.monochrome1_voi_lut(tmp_path / "m1.dcm")
    out = tmp_path / "inspect"
    assert main(["-q", "inspect", "--adapter", "medical.xray", str(path), "--out", str(out)]) == 0
    array = np.load(out / "sample.npy", allow_pickle=False)
    expected = 1.0 - table[np.clip(stored - first, 0, len(table) - 1)] / 4095.0
    np.testing.assert_allclose(array[0], expected, atol=1e-6)
    report = json.loads((out / "sample.json").read_text())
    assert report["meta"]["voi"] == "VOI LUT" and report["meta"]["photometric"] == "MONOCHROME1"
    with Image.open(out / "preview.png") as png:
        assert png.format == "PNG" and min(png.size) > 50
    # a window, and a chosen frame of a cine
    si, stored = F.slope_intercept(tmp_path / "si.dcm")
    assert main(["-q", "inspect", "--adapter", "medical.xray", str(si), "--out", str(out),
                 "data.options.window=WIDE"]) == 0
    hu = stored * 2.0 - 1024.0
    windowed = np.clip((hu - 499.5) / 1499 + 0.5, 0, 1)
    np.testing.assert_allclose(np.load(out / "sample.npy")[0], windowed, atol=1e-6)
    cine, stack = F.rle_cine(tmp_path / "cine.dcm", frames=4)
    assert main(["-q", "inspect", "--adapter", "medical.xray", str(cine), "--out", str(out), "--index", "2"]) == 0
    np.testing.assert_allclose(np.load(out / "sample.npy")[0], stack[2] / 255.0, atol=1e-6)
    assert "sample 2 of 4" in capsys.readouterr().out


def test_zero_or_negative_pixel_spacing_is_unknown_with_a_warning(tmp_path, capsys, caplog):
    """A computed radiograph exported with PixelSpacing 0.000\\0.000: spacing null in sample.json, not [0, 0]."""
    import logging

    rows, cols = 8, 10
    ds = F.base_dataset(rows, cols, modality="CR")
    ds.PixelSpacing = ["0.000", "0.000"]
    ds.PixelData = F.ramp(rows, cols, 0, 4095).astype(np.uint16).tobytes()
    path = F.write(ds, tmp_path / "cr.dcm")
    out = tmp_path / "inspect"
    with caplog.at_level(logging.WARNING, logger="mae_medical"):
        assert main(["-q", "inspect", "--adapter", "medical.xray", str(path), "--out", str(out)]) == 0
    assert json.loads((out / "sample.json").read_text())["meta"]["spacing"] is None
    assert f"{path}: PixelSpacing 0 \\ 0 is not a pixel size" in caplog.text
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [-0.15, 0.15]
    negative = F.write(ds, tmp_path / "neg.dcm")
    assert XrayAdapter().read(negative).meta["spacing"] is None
    ds.ImagerPixelSpacing = [0.139, 0.143]
    assert XrayAdapter().read(F.write(ds, tmp_path / "ok.dcm")).meta["spacing"] == pytest.approx([0.139, 0.143])


def test_inspect_names_a_bad_file(tmp_path, capsys):
    path = F.truncated(tmp_path / "cut.dcm")
    assert main(["-q", "inspect", "--adapter", "medical.xray", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: cannot decode pixel data") and "\n" not in err


@pytest.mark.slow
def test_xray_adapter_conforms():
    assert_adapter_conforms("medical.xray")


@pytest.mark.slow
def test_pretraining_through_the_cli_skips_and_lists_bad_files(tmp_path, capsys):
    archive = tmp_path / "archive"
    for k in range(4):
        F.jpeg2000(archive / f"j2k_{k}.dcm")
        F.monochrome1_voi_lut(archive / f"m1_{k}.dcm")
    F.truncated(archive / "cut.dcm")
    F.video_file(archive / "video.dcm")
    F.structured_report(archive / "report.dcm")  # no pixel data: left out (listed at step 0), never drawn
    run = tmp_path / "run"
    # 10 samples, batches of 5: the two steps draw every sample once, the bad ones included
    code = main(["-q", "pretrain", "--adapter", "medical.xray", "--data", str(archive), "--out", str(run), *MICRO,
                 "engine.batch_size=5", "engine.max_steps=2", "engine.checkpoint_every=2", "data.stats_samples=10",
                 "data.max_bad_fraction=0.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "finished 2 steps" in captured.out
    with open(run / "skipped.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    skipped = {row["source"].rsplit("/", 1)[-1]: row["reason"] for row in rows}
    assert set(skipped) == {"cut.dcm", "video.dcm", "report.dcm"}
    assert [r["step"] for r in rows if r["source"].endswith("report.dcm")] == ["0"]
    assert skipped["report.dcm"] == "no pixel data (Basic Text SR Storage, modality SR)"
    assert "MPEG-4 AVC/H.264" in skipped["video.dcm"] and "PyAV" in skipped["video.dcm"]
    assert skipped["cut.dcm"].startswith("cannot decode pixel data")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["in_chans"] == 1 and config["mask"]["ratio"] == 0.9
    assert (run / "checkpoint.pt").is_file()
