"""``mae-domains pretrain --init`` and ``evaluate`` with published weights, through the command line on a
tiny archive: an original MAE checkpoint (pickled with its ``argparse.Namespace``), an encoder-only
release (fresh decoder, and the run says so), one of our runs, and one-line errors (exit 2)."""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mae_domains.cli import main
from tests.conversion.test_conversion_core import original_mae
from tests.evaluation.helpers import write_stripes_archive

MODEL = {"preset": "micro", "img_size": 32, "patch_size": 8, "decoder_embed_dim": 32, "decoder_depth": 1,
         "decoder_num_heads": 4}
TINY = [f"model.{k}={v}" for k, v in MODEL.items()] + ["engine.batch_size=4", "data.num_workers=0", "engine.max_steps=1",
                                                      "engine.log_every=1", "engine.figure_every=0"]

pytestmark = pytest.mark.slow


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    return root


@pytest.fixture
def mae_checkpoint(tmp_path):
    _, state = original_mae()
    path = tmp_path / "mae_pretrain_micro.pth"
    torch.save({"model": state, "args": argparse.Namespace(model="mae_vit_micro")}, path)
    return path, state


def pretrain(archive, out, *extra) -> int:
    return main(["-q", "pretrain", "--adapter", "image", "--data", str(archive), "--out", str(out), *TINY, *extra])


def test_pretrain_continues_from_an_original_mae_checkpoint(archive, mae_checkpoint, tmp_path, caplog):
    path, state = mae_checkpoint
    caplog.set_level(logging.INFO)
    assert pretrain(archive, tmp_path / "run", "--init", str(path)) == 0
    report = json.loads((tmp_path / "run" / "init_report.json").read_text())
    assert report["family"] == "mae" and report["initialized"] == []
    assert ["decoder_pred.weight", "head.pred.weight"] in report["mapped"]
    assert "converted mae weights from" in caplog.text
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["model"]["init"] == str(path)
    # our own run is a valid --init too
    assert pretrain(archive, tmp_path / "run2", "--init", str(tmp_path / "run")) == 0
    assert json.loads((tmp_path / "run2" / "init_report.json").read_text())["family"] == "mae_domains checkpoint"


def test_an_encoder_only_release_gets_a_fresh_decoder_and_the_run_says_so(archive, tmp_path, caplog):
    _, state = original_mae()
    path = tmp_path / "encoder_only.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith(("decoder_", "mask_token"))}, path)
    caplog.set_level(logging.INFO)
    assert pretrain(archive, tmp_path / "run", "--init", f"mae:{path}") == 0
    assert "the decoder starts fresh" in caplog.text
    report = json.loads((tmp_path / "run" / "init_report.json").read_text())
    assert "decoder.embed.weight" in report["initialized"] and "head.pred.weight" in report["initialized"]


@pytest.mark.parametrize("spec, needle", [
    ("nope:{ckpt}", "unknown checkpoint family 'nope'"),
    ("{tmp}/missing.pth", "missing.pth"),
    ("satmae_group:{ckpt}", "satmae_group weights convert into remote_sensing.multispectral, not into adapter image"),
])
def test_wrong_init_is_one_line_and_exit_2(archive, mae_checkpoint, tmp_path, capsys, spec, needle):
    spec = spec.format(ckpt=mae_checkpoint[0], tmp=tmp_path)
    assert pretrain(archive, tmp_path / "run", "--init", spec) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


def test_evaluate_accepts_published_weights_directly(mae_checkpoint, tmp_path):
    path, _ = mae_checkpoint
    data = tmp_path / "stripes"
    write_stripes_archive(data, "train", 4, seed=0)
    write_stripes_archive(data, "test", 2, seed=1)
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump({"adapter": "image", "model": MODEL}))
    out = tmp_path / "results"
    assert main(["-q", "evaluate", "--run", f"mae:{path}", "--config", str(config), "--train", str(data / "train"),
                 "--test", str(data / "test"), "--protocol", "knn", "--set", "k=3", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert (out / "results.jsonl").is_file()
