"""Prepared shards (``mae-domains prepare``) give the samples, batches and runs the raw archive gives."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_domains.data.loaders import pretraining_loader, sample_signatures
from mae_domains.data.sample import Sample
from mae_domains.engine import pretrain
from mae_domains.registry import get_adapter
from mae_domains.shards import open_archive, prepare_archive
from mae_domains.shards.encoding import decode_sample, encode_sample
from mae_domains.shards.prepare import DONE_NAME, part_name

from tests.engine.conftest import StopAfter, assert_tensors_equal, crash_at, load_checkpoint, make_config, write_pngs


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """22 PNGs and one corrupt file (skipped and replaced, from files and from shards alike)."""
    folder = tmp_path / "archive"
    write_pngs(folder, 22, seed=3)
    (folder / "img999.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return folder


def prepared(archive: Path, out: Path, *overrides: str, **kwargs):
    return prepare_archive(make_config(archive, *overrides), out, progress=False, **kwargs)


def batches(config, steps: int) -> list[dict]:
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    reader, refs = open_archive(adapter, config.data.sources)
    stats = reader.compute_stats(refs, config.data.stats_samples, config.engine.seed)
    loader = pretraining_loader(reader, refs, stats, batch_size=4, seed=config.engine.seed, max_steps=steps,
                                signatures=sample_signatures(reader, refs))
    return list(loader)


def test_sample_round_trip_is_exact():
    """Integer-valued float pixels are stored narrowed (uint16) and come back as the same float32 bits;
    validity (bool), label and metadata with numpy values, tuples and nesting come back with their types."""
    image = np.random.default_rng(0).integers(0, 4096, (2, 5, 7)).astype(np.float32)
    valid = np.random.default_rng(1).random((5, 7)) > 0.3
    meta = {"source": "/a/b.dcm", "spacing": (0.5, 0.25), "wavelengths": np.array([0.49, 0.56], np.float32),
            "dates": ["2020-06-01"], "gsd": np.float64(10.0), "nested": {"crs": "EPSG:32633", "n": 3}}
    row = encode_sample(Sample(image, meta, valid, 4))
    assert row["image"].dtype == np.uint16
    back = decode_sample(row)
    assert back.image.dtype == np.float32 and np.array_equal(back.image, image)
    assert back.valid.dtype == bool and np.array_equal(back.valid, valid)
    assert back.label == 4 and back.meta["spacing"] == (0.5, 0.25) and back.meta["nested"] == meta["nested"]
    assert back.meta["wavelengths"].dtype == np.float32 and np.array_equal(back.meta["wavelengths"], meta["wavelengths"])
    assert type(back.meta["gsd"]) is np.float64
    fractional = image + 0.5  # not integer-valued: stored as is
    assert encode_sample(Sample(fractional, {}))["image"].dtype == np.float32


def test_one_epoch_from_shards_equals_the_raw_archive(archive, tmp_path, caplog):
    """Same images (crops, flips, normalization), mask seeds and replacements of the bad file, batch by batch."""
    summary = prepared(archive, tmp_path / "shards", workers=2, part_size=12)
    assert summary.samples == 23 and summary.bad == 1 and summary.parts_written == 2
    raw = batches(make_config(archive), 5)
    with caplog.at_level(logging.WARNING):
        shards = batches(make_config(tmp_path / "shards"), 5)
    assert len(raw) == len(shards) == 5
    for a, b in zip(raw, shards):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask_seed"], b["mask_seed"])
        assert torch.equal(a["index"], b["index"])
        assert [(s.source, s.index) for s in a["skipped"]] == [(s.source, s.index) for s in b["skipped"]]
    assert any(s for b in shards for s in b["skipped"]), "the corrupt file is drawn in the first epoch"
    assert "img999.png" in caplog.text


def test_prepare_resumes_after_an_interruption(archive, tmp_path):
    out = tmp_path / "shards"
    first = prepared(archive, out, part_size=8, workers=1)
    manifest = json.loads((out / "mae_domains_shards.json").read_text())
    (out / part_name(1) / DONE_NAME).unlink()  # part 1 was being written when the run stopped
    (out / "mae_domains_shards.json").unlink()
    again = prepared(archive, out, part_size=8, workers=1)
    assert (again.parts_kept, again.parts_written) == (first.parts_written - 1, 1)
    assert json.loads((out / "mae_domains_shards.json").read_text()) == manifest
    with pytest.raises(ValueError, match="other settings"):
        prepared(archive, out, "model.img_size=40", part_size=8, workers=1)


@pytest.mark.slow
def test_pretrain_from_shards_matches_raw_and_resumes_bit_exact(archive, tmp_path):
    """Same weights as from the files; stopped mid-epoch (2 loader workers) and resumed: bitwise the same."""
    prepared(archive, tmp_path / "shards", workers=1)
    common = ["engine.batch_size=4", "engine.max_steps=7", "engine.checkpoint_every=3", "engine.seed=2",
              "data.num_workers=2", "model.drop_path_rate=0.2"]
    pretrain(make_config(archive, *common), tmp_path / "raw")
    shards = make_config(tmp_path / "shards", *common)
    pretrain(shards, tmp_path / "full")
    with pytest.raises(StopAfter):
        pretrain(shards, tmp_path / "resumed", on_step=crash_at(4))
    pretrain(shards, tmp_path / "resumed", resume=True)
    raw, full, resumed = (load_checkpoint(tmp_path / name) for name in ("raw", "full", "resumed"))
    assert full["step"] == resumed["step"] == 7
    assert_tensors_equal(raw["model"], full["model"], exact=True)
    assert_tensors_equal(full["model"], resumed["model"], exact=True)
    assert "img999.png" in (tmp_path / "full" / "skipped.csv").read_text()
