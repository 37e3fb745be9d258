"""End to end: pretraining that mixes 3- and 5-channel images (and bad files, skipped and listed), the CLI
run on the CPU recipe, embedding, and the conformance kit."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_domains.config import load_config
from mae_microscopy.adapter import ChannelAgnosticAdapter
from tests.microscopy.files import PAINTING, write_cells_ome
from tests.microscopy.test_bad_input import corrupt_page

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "microscopy_micro_cpu.yaml"


class ChannelRecorder(ChannelAgnosticAdapter):
    """Records the channel names of every training batch."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.batches: list[tuple[str, ...]] = []

    def model_inputs(self, batch, device):
        names = {tuple(m["channel_names"]) for m in batch["meta"]}
        assert len(names) == 1, f"a batch mixed channel sets {names}"
        self.batches.append(names.pop())
        return super().model_inputs(batch, device)


def mixed_archive(folder: Path) -> dict[str, str]:
    """Three 3-channel and three 5-channel fields (64 px), a 5-channel field with an all-zero channel and
    one with a corrupt page; returns the bad files and a fragment of their reason."""
    folder.mkdir(parents=True)
    for i in range(3):
        write_cells_ome(folder / f"three{i}.ome.tif", ["DNA", "ER", "Mito"], i)
        write_cells_ome(folder / f"five{i}.ome.tif", PAINTING, 10 + i)
    zero = write_cells_ome(folder / "zero.ome.tif", PAINTING, 20)
    zero[4] = 0
    from tests.microscopy.files import write_ome_tiff

    write_ome_tiff(folder / "zero.ome.tif", zero, PAINTING)
    import tifffile

    with tifffile.TiffWriter(folder / "broken.tif") as tif:
        for i, name in enumerate(PAINTING):
            tif.write(zero[i] + 1, compression="zlib", extratags=[(285, "s", 0, name, True)])
    corrupt_page(folder / "broken.tif", 2)
    return {str(folder / "zero.ome.tif"): "'Mito' (index 4) is all zero",
            str(folder / "broken.tif"): "cannot read channel 'ER' (index 2)"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_pretraining_mixes_3_and_5_channel_images_and_lists_bad_files(tmp_path):
    from mae_domains.engine import pretrain

    bad = mixed_archive(tmp_path / "archive")
    config = load_config(RECIPE, [f"data.sources=[{tmp_path / 'archive'}]", "engine.max_steps=8", "engine.batch_size=2",
                                  "data.max_bad_fraction=0.5", "engine.figure_every=8", "engine.checkpoint_every=8"])
    adapter = ChannelRecorder(config.data.options)
    result = pretrain(config, tmp_path / "run", adapter=adapter)
    assert result.steps == 8 and np.isfinite(result.final_loss)
    assert {len(names) for names in adapter.batches} == {3, 5}  # one run, both channel sets, never mixed
    listed = {row["source"]: row["reason"] for row in read_rows(tmp_path / "run" / "skipped.csv")}
    assert set(listed) == set(bad), listed
    for source, fragment in bad.items():
        assert fragment in listed[source]
    assert list((tmp_path / "run" / "figures").glob("*.png"))
    from mae_domains.weights import safe_torch_load

    state = safe_torch_load(tmp_path / "run" / "checkpoint.pt")  # weights_only=True, as the engine loads it
    assert set(state["stats"]["channel_names"]) == set(PAINTING)  # statistics per channel *name*
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_cli_pretrain_and_embed(tmp_path):
    from mae_domains.cli import main

    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(2):
        write_cells_ome(archive / f"f{i}.ome.tif", PAINTING, i)
    run = tmp_path / "run"
    assert main(["pretrain", "--config", str(RECIPE), "--data", str(archive), "--out", str(run),
                 "engine.max_steps=3", "engine.figure_every=0"]) == 0
    assert (run / "checkpoint.pt").is_file() and read_rows(run / "metrics.csv")
    out = tmp_path / "emb.npz"
    assert main(["embed", "--run", str(run), "--data", str(archive), "--out", str(out), "--pool", "avg"]) == 0
    saved = np.load(out)
    assert saved["embeddings"].shape == (8, 64) and np.isfinite(saved["embeddings"]).all()
    assert saved["sample_ids"][0].startswith("f0.ome.tif")


SPAWN = "picklable for spawned DataLoader workers"


def test_conformance_kit():
    from mae_domains.testing.conformance import CHECKS, check_adapter

    report = check_adapter("microscopy.channel_agnostic", only=[name for name in CHECKS if name != SPAWN])
    assert report.passed and len(report.results) == len(CHECKS) - 1, report.render()


@pytest.mark.slow
def test_conformance_spawned_workers():
    from mae_domains.testing.conformance import check_adapter

    report = check_adapter("microscopy.channel_agnostic", only=[SPAWN])
    assert report.passed and len(report.results) == 1, report.render()
