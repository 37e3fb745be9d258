"""``docs/notebook.md`` runs as written: each field's code block is executed in order against small runs and
real files of that field (PNG, DICOM, GeoTIFF, OME-TIFF), and gives one finite embedding per sample."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mae_domains.config import dump_config
from mae_domains.registry import get_adapter
from mae_domains.testing.conformance import Context
from tests.medical.dicom_files import base_dataset, ramp, write
from tests.microscopy.files import write_ome_tiff
from tests.remote_sensing.rasters import write_raster

DOC = Path(__file__).resolve().parents[1] / "docs" / "notebook.md"


def write_run(adapter: str, run_dir: Path) -> None:
    """A run folder of the adapter's micro model (32 px) with statistics, as the engine leaves it."""
    ctx = Context(get_adapter(adapter))
    run_dir.mkdir(parents=True)
    torch.save({"model": ctx.model().state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": adapter, "step": 3}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")


def write_files(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for name in ("leaf", "bark", "moss"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "photos" / f"{name}.png")
    for case in ("case1", "case2"):
        ds = base_dataset(48, 40)
        ds.PixelData = ramp(48, 40, 100, 3000).astype(np.uint16).tobytes()
        write(ds, root / "dicom" / f"{case}.dcm")
    bands = (rng.random((3, 64, 64)) * 3000).astype(np.uint16)
    write_raster(root / "scenes" / "field.tif", bands, res=10.0, descriptions=["B4", "B3", "B2"])
    (root / "plates").mkdir()
    cells = (rng.random((5, 64, 64)) * 4000).astype(np.uint16)
    write_ome_tiff(root / "plates" / "A01.ome.tif", cells, ["DNA", "RNA", "ER", "AGP", "Mito"])


def sections() -> list[tuple[str, str]]:
    """(heading, code) of each ``## `` section's python block."""
    text = DOC.read_text(encoding="utf-8")
    found = []
    for part in text.split("\n## ")[1:]:
        heading = part.splitlines()[0]
        blocks = re.findall(r"```python\n(.*?)```", part, re.S)
        assert len(blocks) == 1, f"{heading}: one python block"
        found.append((heading, blocks[0]))
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebook")
    for adapter, run in (("image", "photos"), ("medical.xray", "xray"), ("remote_sensing.scale", "scale"),
                         ("microscopy.channel_agnostic", "cells")):
        write_run(adapter, root / "runs" / run)
    write_files(root)
    return root


def test_every_field_has_an_example():
    headings = " ".join(h for h, _ in sections())
    for adapter in ("`image`", "`medical.xray`", "`remote_sensing.scale`", "`microscopy.channel_agnostic`"):
        assert adapter in headings


@pytest.mark.parametrize("index", range(4))
def test_example_runs_as_written(index, workspace, monkeypatch):
    heading, code = sections()[index]
    monkeypatch.chdir(workspace)
    scope: dict = {}
    exec(compile(code, f"{DOC.name}: {heading}", "exec"), scope)
    features = scope["features"]
    assert isinstance(features, torch.Tensor) and features.ndim == 2 and features.shape[1] == 64
    assert features.shape[0] >= 1 and torch.isfinite(features).all()
    if "image" in heading:
        assert features.shape[0] == 3 and scope["tokens"].shape == (1, 1 + 16, 64)
        leaf = sorted(p.name for p in (workspace / "photos").iterdir()).index("leaf.png")
        torch.testing.assert_close(scope["leaf_features"][0], features[leaf], atol=1e-5, rtol=1e-5)
    if "medical" in heading:
        assert features.shape[0] == 2
    if "scale" in heading:
        assert scope["coarse"].shape == (1, 64)
