"""Classification fine-tuning through the shared ``finetune`` protocol for every remote-sensing adapter:
single scenes (multispectral, scale) from class folders, time series (temporal) from a manifest."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mae_domains.evaluation.runner import run_protocol
from mae_remote_sensing.evaluation import labelled_loaders
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
SPECTRA = {"Forest": [300, 600, 300, 4200, 2000, 900], "SeaLake": [700, 600, 300, 100, 50, 30]}
SETTINGS = {"epochs": 3, "base_lr": 0.01, "warmup_epochs": 0, "drop_path": 0.0, "bootstrap_resamples": 0}


def scene(rng, spectrum):
    data = np.asarray(spectrum, np.float32)[:, None, None] * rng.uniform(0.8, 1.2, (6, 32, 32))
    return data.astype(np.uint16)


def class_folders(root, per_class, seed):
    rng = np.random.default_rng(seed)
    for name, spectrum in SPECTRA.items():
        for i in range(per_class):
            write_raster(root / name / f"{name}_{i}.tif", scene(rng, spectrum), descriptions=BANDS)
    return root


def series_manifest(root, per_class, seed):
    """Two dated frames per series; the series' label in the manifest."""
    rng = np.random.default_rng(seed)
    rows = [["path", "date", "label", "series"]]
    for name, spectrum in SPECTRA.items():
        for i in range(per_class):
            for day in ("2021-05-01", "2021-07-01"):
                path = write_raster(root / f"{name}_{i}_{day}.tif", scene(rng, spectrum), descriptions=BANDS)
                rows.append([path.name, day, name, f"{name}_{i}"])
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root / "manifest.csv"


@pytest.mark.parametrize("name", ["multispectral", "temporal", "scale"])
def test_finetune_protocol_for_every_remote_sensing_adapter(tmp_path, name):
    options = {"bands": BANDS, "chips_per_scene": 1}
    if name == "multispectral":
        options["groups"] = [BANDS[:4], BANDS[4:]]
    if name == "temporal":
        options["frames"] = 2
        train, test = series_manifest(tmp_path / "train", 4, 0), series_manifest(tmp_path / "test", 2, 1)
    else:
        train, test = class_folders(tmp_path / "train", 4, 0), class_folders(tmp_path / "test", 2, 1)
    adapter = make_adapter(name, **options)
    stats = adapter.compute_stats(adapter.discover([train]))
    data = labelled_loaders(adapter, [train], [test], stats, batch_size=4)
    assert data.classes == sorted(SPECTRA)
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    records = run_protocol("finetune", data.train, data.test, encoder=model.encoder, grid_batch=adapter.grid_batch,
                           class_names=data.classes, device="cpu", settings=SETTINGS, adapter=adapter.name)
    summary = {r.metric: r.value for r in records if r.class_name is None}
    assert {"top1", "macro_f1"} <= set(summary) and all(0 <= v <= 1 for v in summary.values())
    assert records[0].n_train == 8 and records[0].n_test == 4
