"""The command line end to end on a tiny archive: demo, pretrain/resume, stats, reconstruct, embed,
export (loadable by timm), and clear errors without tracebacks."""

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from mae_domains.cli import main

TINY = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "model.decoder_num_heads=4", "engine.batch_size=4", "data.num_workers=0",
        "engine.log_every=1"]


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    rng = np.random.default_rng(0)
    for cls in ("stripes", "dots"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40, 44, 3), dtype=np.uint8)).save(root / cls / f"{cls}{i}.png")
    return root


def test_demo_runs_on_the_shipped_sample_archive(tmp_path, capsys):
    code = main(["-q", "demo", "--out", str(tmp_path / "demo"), *TINY, "engine.max_steps=2", "engine.figure_every=2",
                 "model.img_size=64"])
    out = capsys.readouterr().out
    assert code == 0, out
    run = tmp_path / "demo" / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.csv").is_file()
    assert list((run / "figures").glob("*.png"))
    assert str(run.resolve()) in out
    sources = {p.name for p in (tmp_path / "demo" / "sample_archive").iterdir() if p.is_dir()}
    assert {"photo_china", "mri_brain", "dem_jacksboro"} <= sources


def test_pretrain_resume_reconstruct_embed_export(archive, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run), *TINY,
                 "engine.max_steps=2"]) == 0
    assert main(["-q", "pretrain", "--resume", str(run), "engine.max_steps=4"]) == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]

    assert main(["-q", "stats", "--adapter", "image", "--data", str(archive), "--out", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert len(stats["mean"]) == 3 and stats["count"] == 12

    assert main(["-q", "reconstruct", "--run", str(run), "--out", str(tmp_path / "recon.png")]) == 0
    assert (tmp_path / "recon.png").stat().st_size > 0

    assert main(["-q", "embed", "--run", str(run), "--data", str(archive), "--out", str(tmp_path / "emb.npz")]) == 0
    emb = np.load(tmp_path / "emb.npz", allow_pickle=False)
    assert emb["embeddings"].shape == (12, 64) and len(set(emb["sample_ids"])) == 12

    assert main(["-q", "export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["pretrain_steps"] == 4 and config["patch_size"] == 8
    vit = timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=0)
    vit.load_state_dict(load_file(tmp_path / "export" / "encoder.safetensors"), strict=True)
    assert torch.isfinite(vit(torch.randn(1, 3, 32, 32))).all()

    # the export embeds like the run; it cannot reconstruct (its decoder was not exported)
    assert main(["-q", "embed", "--run", str(tmp_path / "export"), "--data", str(archive),
                 "--out", str(tmp_path / "emb_export.npz")]) == 0
    exported = np.load(tmp_path / "emb_export.npz", allow_pickle=False)
    assert np.array_equal(exported["embeddings"], emb["embeddings"])
    assert np.array_equal(exported["sample_ids"], emb["sample_ids"])
    capsys.readouterr()
    assert main(["reconstruct", "--run", str(tmp_path / "export")]) == 2
    assert "encoder only" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["pretrain", "--adapter", "image", "--data", "/no/such/folder"], "/no/such/folder: no such file"),
    (["pretrain", "--adapter", "imagee", "--data", "."], "did you mean 'image'"),
    (["pretrain", "--adapter", "image", "--data", ".", "model.presett=tiny"], "did you mean 'preset'"),
    (["pretrain", "--config", "/no/such.yaml", "--data", "."], "/no/such.yaml: config file not found"),
    (["pretrain", "--resume", "/no/run"], "/no/run: cannot resume"),
    (["reconstruct", "--run", "/no/run"], "/no/run: not a run directory"),
])
def test_errors_name_the_culprit_without_traceback(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_unsafe_checkpoint_in_run_is_refused(archive, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run), *TINY,
                 "engine.max_steps=1"]) == 0

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"model": {}, "x": Evil()}, run / "checkpoint.pt")
    assert main(["reconstruct", "--run", str(run)]) == 2
    assert "refused to load" in capsys.readouterr().err
