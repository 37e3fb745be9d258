"""``mae-domains evaluate`` end to end: the run's ``eval`` section as protocol defaults, and fine-tuning
a grid adapter of each kind (2D ``image``, band groups, time series) on generated archives after a tiny
pretraining run through the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import yaml

from mae_domains.cli import main
from mae_domains.evaluation.cli_support import evaluate_command, parse_settings
from mae_domains.evaluation.records import read_jsonl
from mae_domains.evaluation.runner import evaluate_checkpoint
from tests.evaluation.helpers import write_image_run, write_stripes_archive
from tests.remote_sensing.rasters import write_raster

TINY = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "model.decoder_num_heads=4", "engine.batch_size=4", "data.num_workers=0",
        "engine.max_steps=2", "engine.log_every=1"]
EVAL_SECTION = {"knn_k": 3, "knn_temperature": 0.2, "pool": "avg", "probe_epochs": 2, "batch_size": 5,
                "protocols": ["knn", "linear_probe"]}


@pytest.fixture
def run_with_eval_section(tmp_path):
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 5, seed=0)
    write_stripes_archive(archive, "test", 3, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive, {"eval": EVAL_SECTION})
    return tmp_path / "run", archive


def _settings(out: Path) -> dict[str, dict]:
    return {r.protocol: r.settings for r in read_jsonl(out / "results.jsonl") if r.metric == "top1"}


def test_evaluate_takes_its_defaults_from_the_runs_eval_section(run_with_eval_section, tmp_path):
    run, archive = run_with_eval_section
    train, test = [str(archive / "train")], [str(archive / "test")]
    assert main(["-q", "evaluate", "--run", str(run), "--train", *train, "--test", *test, "--protocol", "knn",
                 "--out", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    knn = _settings(tmp_path / "cli")["knn"]
    assert (knn["k"], knn["temperature"], knn["pool"]) == (3, 0.2, "avg")

    # No protocol named: the run's eval.protocols; explicit settings win over the section.
    args = argparse.Namespace(benchmark=None, run=str(run), train=train, test=test, protocol=None,
                              out=str(tmp_path / "all"), device="cpu", seed=0, set=["k=4"])
    assert evaluate_command(args) == 0
    settings = _settings(tmp_path / "all")
    assert set(settings) == {"knn", "linear_probe"}
    assert settings["knn"]["k"] == 4 and settings["knn"]["temperature"] == 0.2
    assert settings["linear_probe"]["epochs"] == 2 and settings["linear_probe"]["pool"] == "avg"

    # Without the section: the protocols' own defaults; fine-tuning keeps its average pooling.
    records = evaluate_checkpoint(run, "knn", tmp_path / "plain", train=train, test=test, device="cpu",
                                  run_defaults=False)
    assert (records[0].settings["k"], records[0].settings["pool"]) == (20, "cls")
    finetune = evaluate_checkpoint(run, "finetune", tmp_path / "ft", train=train, test=test, device="cpu",
                                   settings={"epochs": 1, "warmup_epochs": 0})
    assert finetune[0].settings["pool"] == "avg" and finetune[0].settings["epochs"] == 1


def test_parse_settings():
    assert parse_settings(["k=5", "pool=avg", "base_lr=1e-3", "clip_grad=null"]) == {
        "k": 5, "pool": "avg", "base_lr": 1e-3, "clip_grad": None}
    assert parse_settings(["optimizer=adamw"]) == {"optimizer": "adamw"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["k"])


# ----- fine-tuning through the command line, one adapter of each kind -------------------------------
BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
TEMPORAL_BANDS = ["B2", "B3", "B4", "B8A", "B11", "B12"]
SPECTRA = {"Forest": [300, 600, 300, 4200, 2000, 900], "SeaLake": [700, 600, 300, 100, 50, 30]}


def _write_spectra(root: Path, bands: list[str], per_class: int, seed: int, dated: bool = False) -> Path:
    """``class/*.tif`` rasters of 32 x 32 px; with ``dated`` each file's name carries a date, so a class
    folder is one time series the temporal adapter draws chips and frame subsets from."""
    rng = np.random.default_rng(seed)
    for name, spectrum in SPECTRA.items():
        for i in range(per_class):
            data = np.asarray(spectrum, np.float32)[:, None, None] * rng.uniform(0.8, 1.2, (len(bands), 32, 32))
            stem = f"S2_2021{i + 3:02d}15" if dated else f"{name}_{i}"
            write_raster(root / name / f"{stem}.tif", data.astype(np.uint16), descriptions=bands)
    return root


def _image_archive(root: Path) -> tuple[Path, Path, dict]:
    write_stripes_archive(root, "train", 4, seed=0)
    write_stripes_archive(root, "test", 2, seed=1)
    return root / "train", root / "test", {}


def _multispectral_archive(root: Path) -> tuple[Path, Path, dict]:
    options = {"bands": BANDS, "groups": [BANDS[:4], BANDS[4:]], "chips_per_scene": 1}
    return _write_spectra(root / "train", BANDS, 4, 0), _write_spectra(root / "test", BANDS, 2, 1), options


def _temporal_archive(root: Path) -> tuple[Path, Path, dict]:
    options = {"bands": TEMPORAL_BANDS, "frames": 2, "chips_per_scene": 4}
    train = _write_spectra(root / "train", TEMPORAL_BANDS, 3, 0, dated=True)
    return train, _write_spectra(root / "test", TEMPORAL_BANDS, 3, 1, dated=True), options


ARCHIVES = {"image": _image_archive, "remote_sensing.multispectral": _multispectral_archive,
            "remote_sensing.temporal": _temporal_archive}


@pytest.mark.slow
@pytest.mark.parametrize("adapter", sorted(ARCHIVES))
def test_cli_finetune_for_each_kind_of_grid_adapter(adapter, tmp_path, capsys):
    train, test, options = ARCHIVES[adapter](tmp_path / "archive")
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({"data": {"options": options}}))
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--adapter", adapter, "--config", str(config), "--data", str(train),
                 "--out", str(run), *TINY]) == 0
    out = tmp_path / "results"
    assert main(["-q", "evaluate", "--run", str(run), "--train", str(train), "--test", str(test),
                 "--protocol", "finetune", "--out", str(out), "--device", "cpu"]) == 0
    assert "| finetune |" in capsys.readouterr().out
    records = read_jsonl(out / "results.jsonl")
    summary = {r.metric: r for r in records if r.class_name is None}
    assert {"top1", "macro_f1", "mean_roc_auc"} <= set(summary)
    assert all(r.adapter == adapter and r.protocol == "finetune" and r.step == 2 for r in records)
    assert all(0.0 <= r.value <= 1.0 for r in summary.values())
    assert {r.class_name for r in records if r.class_name} == ({"horizontal", "vertical"} if adapter == "image"
                                                               else set(SPECTRA))
    assert summary["top1"].settings["layer_decay"] == 0.75 and summary["top1"].n_test > 0
