"""Embeddings are never silently wrong: bad files are skipped and listed (never replaced by another
sample), ids are paths relative to the data root, chips keep CRS / bounds / window, and embed and
reconstruct end in one clear line when nothing can be read or the run is missing."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mae_domains.cli import main
from mae_domains.config import dump_config
from mae_domains.registry import get_adapter
from mae_domains.runs.sample_keys import data_root, position_arrays, position_metadata, sample_key, unique_keys
from mae_domains.testing.conformance import Context


def write_run(run_dir: Path, name: str = "image", **options) -> Path:
    """A run folder holding the adapter's micro model (32 px, 8 px patches) and its statistics."""
    ctx = Context(get_adapter(name, options))
    model = ctx.model()
    run_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": name, "step": 1}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")
    (run_dir / "stats.json").write_text(json.dumps(ctx.stats.as_dict()))
    return run_dir


def png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def archive(tmp_path):
    """``a/x.png`` and ``b/x.png`` (same name, different folders), two more images and one broken file."""
    root = tmp_path / "archive"
    for k, rel in enumerate(["a/x.png", "a/y.png", "b/x.png", "b/z.png"]):
        png(root / rel, k)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


def test_embed_skips_and_lists_bad_files_with_ids_relative_to_the_root(archive, tmp_path, capsys):
    run = write_run(tmp_path / "run")
    out = tmp_path / "emb.npz"
    assert main(["-q", "embed", "--run", str(run), "--data", str(archive), "--out", str(out),
                 "--batch-size", "2", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    emb = np.load(out, allow_pickle=False)
    ids = list(emb["sample_ids"])
    assert ids == ["a/x.png", "a/y.png", "b/x.png", "b/z.png"]  # the broken file is not replaced by a draw
    assert emb["embeddings"].shape == (4, 64) and len(np.unique(emb["embeddings"], axis=0)) == 4
    assert list(emb["sources"]) == ids and str(emb["data_root"]) == str(archive)
    assert [Path(s).name for s in emb["skipped_sources"]] == ["broken.png"] and "cannot decode" in emb["skipped_reasons"][0]
    assert "broken.png" in captured.err and "skipped" in captured.err
    rows = list(csv.DictReader((tmp_path / "emb.skipped.csv").open()))
    assert [Path(r["source"]).name for r in rows] == ["broken.png"] and rows[0]["reason"]
    assert "4 embeddings" in captured.out and "1 of 5 samples skipped" in captured.out


def test_embed_and_reconstruct_end_in_one_line_when_nothing_can_be_read(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("p.png", "q.png"):
        (bad / name).write_bytes(b"not an image")
    assert main(["embed", "--run", str(run), "--data", str(bad), "--out", str(tmp_path / "e.npz"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    assert "none of the 2 samples" in err and "p.png" in err
    assert (tmp_path / "e.skipped.csv").is_file() and not (tmp_path / "e.npz").exists()

    assert main(["reconstruct", "--run", str(run), "--data", str(bad), "--out", str(tmp_path / "r.png"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1 and "none of the 2 samples" in err


@pytest.mark.parametrize("command", ["embed", "reconstruct"])
def test_missing_run_is_one_line(command, archive, tmp_path, capsys):
    argv = [command, "--run", str(tmp_path / "no_run"), "--data", str(archive), "--device", "cpu"]
    argv += ["--out", str(tmp_path / "o.npz")] if command == "embed" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "not a run directory" in err


def test_reconstruct_skips_a_bad_file_and_shows_the_good_ones(archive, tmp_path, capsys):
    run = write_run(tmp_path / "run")
    out = tmp_path / "recon.png"
    # b/ holds broken.png, x.png, z.png: the batch of 3 keeps the two good ones, nothing is drawn in its place
    assert main(["-q", "reconstruct", "--run", str(run), "--data", str(archive / "b"), "--out", str(out),
                 "--count", "3", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert out.stat().st_size > 0 and "broken.png" in captured.err and "1 unreadable sample(s) skipped" in captured.out


def test_chips_of_a_georeferenced_scene_keep_crs_bounds_and_window(tmp_path):
    from mae_remote_sensing.bands import DEFAULT_BANDS
    from tests.remote_sensing import rasters

    scene = tmp_path / "scenes" / "tile" / "scene.tif"
    data = (np.random.default_rng(0).random((len(DEFAULT_BANDS), 64, 64)) * 3000 + 100).astype(np.uint16)
    rasters.write_raster(scene, data, descriptions=list(DEFAULT_BANDS))
    run = write_run(tmp_path / "run", "remote_sensing.multispectral", sampling="grid")
    out = tmp_path / "chips.npz"
    assert main(["-q", "embed", "--run", str(run), "--data", str(tmp_path / "scenes"), "--out", str(out),
                 "--device", "cpu"]) == 0
    emb = np.load(out, allow_pickle=False)
    assert len(emb["sample_ids"]) == 4 and len(set(emb["sample_ids"])) == 4
    assert all(i.startswith("tile/scene.tif") for i in emb["sample_ids"])
    assert set(emb["crs"]) == {"EPSG:32633"}
    windows = {tuple(int(v) for v in w) for w in emb["window"]}
    assert windows == {(0, 0, 32, 32), (0, 32, 32, 32), (32, 0, 32, 32), (32, 32, 32, 32)}
    west, south, east, north = 500000.0, 5800000.0 - 640, 500000.0 + 640, 5800000.0
    for (row, col, h, w), bounds in zip(emb["window"], emb["bounds"]):
        expected = [west + 10 * col, north - 10 * (row + h), west + 10 * (col + w), north - 10 * row]
        assert bounds.tolist() == pytest.approx(expected)
    assert emb["bounds"][:, 0].min() == west and emb["bounds"][:, 1].min() == south and emb["bounds"][:, 2].max() == east
    assert json.loads(emb["metadata"][0])["crs"] == "EPSG:32633"


def test_ids_and_positions_of_crops_and_slices():
    root = "/data/root"
    # same file name in two folders
    assert sample_key({"source": "/data/root/a/x.png", "sample_id": "x"}, root) == "a/x.png"
    assert sample_key({"source": "/data/root/b/x.png", "sample_id": "x"}, root) == "b/x.png"
    # a chip id that extends the file's path keeps its chip part
    assert sample_key({"source": "/data/root/s/t.tif", "sample_id": "/data/root/s/t.tif@0_32_32_32"}, root) == \
        "s/t.tif@0_32_32_32"
    # crops of one microscopy field: the adapter's ids, then a counter, keep them apart
    metas = [{"source": "/data/root/f.ome.tif", "sample_id": f"plate/A01/1/win{k}", "window": [0, 32 * k, 32, 32],
              "z": 2, "t": 0} for k in range(2)] + [{"source": "/data/root/g.tif", "sample_id": "g"}] * 2
    keys = unique_keys([sample_key(m, root) for m in metas], metas)
    assert keys == ["f.ome.tif#plate/A01/1/win0", "f.ome.tif#plate/A01/1/win1", "g.tif#g#1", "g.tif#g#2"]
    arrays = position_arrays([position_metadata(m) for m in metas])
    assert arrays["window"].shape == (4, 4) and np.isnan(arrays["window"][2]).all()
    assert arrays["z"].tolist()[:2] == [2.0, 2.0] and np.isnan(arrays["z"][3])
    assert data_root(["/data/root/a", "/data/root/b/*.png"]) == "/data/root"


def test_aggregation_per_image_and_per_well_averages_with_counts():
    from mae_domains.runs.aggregation import aggregate
    from mae_domains.runs.embedding import EmbeddingResult

    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    positions = [{"plate": "P1", "well": "A01", "site": 1, "perturbation": "DMSO"},
                 {"plate": "P1", "well": "A01", "site": 1, "perturbation": "DMSO"},
                 {"plate": "P1", "well": "A01", "site": 2, "perturbation": "DMSO"},
                 {"plate": "P1", "well": "B02", "site": 1, "perturbation": "taxol"},
                 {"plate": "P2", "well": "A01", "site": 1}, {"plate": "P2", "well": "A01", "site": 1}]
    sources = ["P1/A01_s1.tif", "P1/A01_s1.tif", "P1/A01_s2.tif", "P1/B02_s1.tif", "P2/A01_s1.tif", "P2/A01_s1.tif"]
    result = EmbeddingResult(emb, [f"crop{i}" for i in range(6)], sources, positions)
    wells = aggregate(result, "well")
    assert wells.ids == ["P1/A01", "P1/B02", "P2/A01"]
    assert np.allclose(wells.embeddings, [emb[:3].mean(0), emb[3], emb[4:].mean(0)])
    assert [p["count"] for p in wells.positions] == [3, 1, 2]
    assert [p.get("perturbation") for p in wells.positions] == ["DMSO", "taxol", None]
    assert "site" not in wells.positions[0] and wells.positions[1]["site"] == 1
    images = aggregate(result, "image")
    assert images.ids == ["P1/A01/1/P1/A01_s1.tif", "P1/A01/2/P1/A01_s2.tif", "P1/B02/1/P1/B02_s1.tif",
                          "P2/A01/1/P2/A01_s1.tif"]
    assert np.allclose(images.embeddings[0], emb[:2].mean(0)) and images.positions[0]["count"] == 2
    with pytest.raises(ValueError, match="well ids"):
        aggregate(EmbeddingResult(emb, ["x"] * 6, sources, [{}] * 6), "well")


def test_embed_aggregate_image_through_the_cli(archive, tmp_path):
    run = write_run(tmp_path / "run")
    out = tmp_path / "per_image.npz"
    assert main(["embed", "--run", str(run), "--data", str(archive), "--out", str(out), "--aggregate", "image"]) == 0
    data = np.load(out)
    assert len(data["sample_ids"]) == len(set(data["sample_ids"].tolist())) and np.all(data["count"] == 1)


def test_names_with_a_line_break_or_bytes_that_are_not_utf8(archive, tmp_path, capsys):
    """A bad file's name cannot forge a line of embed's report (it is escaped), and embed lists it in its
    skipped.csv byte for byte, as pretrain does, instead of stopping after the .npz."""
    run = write_run(tmp_path / "run")
    forged = "broken\n12:00:00 INFO mae_domains.engine: all good.png"
    (archive / "b" / forged).write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    raw_name = os.fsencode(archive / "b") + b"/bad\xff.png"
    with open(raw_name, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not a png either")
    out = tmp_path / "emb.npz"
    assert main(["embed", "--run", str(run), "--data", str(archive), "--out", str(out),
                 "--batch-size", "2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "skipped " + str(archive / "b" / "broken\\n12:00:00 INFO mae_domains.engine: all good.png") in err
    assert "bad\\udcff.png: cannot decode" in err and not any(line.startswith("12:00") for line in err.splitlines())
    csv_bytes = (tmp_path / "emb.skipped.csv").read_bytes()
    assert raw_name in csv_bytes
    with open(tmp_path / "emb.skipped.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        names = {Path(r["source"]).name for r in csv.DictReader(f)}
    assert names == {"broken.png", forged, os.fsdecode(b"bad\xff.png")}
    assert len(np.load(out, allow_pickle=False)["sample_ids"]) == 4
