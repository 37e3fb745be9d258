"""Prepared shards through the command line, in evaluation and embedding, and for an adapter whose samples
make different token grids (bucketed batches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mae_domains.cli import main
from mae_domains.config import load_config
from mae_domains.data.loaders import pretraining_loader, sample_signatures
from mae_domains.evaluation.runner import evaluate_checkpoint
from mae_domains.registry import get_adapter
from mae_domains.shards import ShardRef, open_archive, prepare_archive
from tests.engine.conftest import MICRO, write_pngs
from tests.evaluation.helpers import write_image_run, write_stripes_archive
from tests.microscopy.test_pretrain import RECIPE, mixed_archive

RUN_MODEL = ["adapter=image", "model.preset=micro", "model.img_size=32", "model.patch_size=8",
             "model.decoder_embed_dim=32", "model.decoder_depth=1", "model.decoder_num_heads=4"]


def test_cli_prepare_then_pretrain(tmp_path, capsys):
    archive = tmp_path / "archive"
    write_pngs(archive, 12)
    shards = tmp_path / "shards"
    assert main(["-q", "prepare", "--adapter", "image", "--data", str(archive), "--out", str(shards),
                 "--workers", "1", *MICRO]) == 0
    assert "12 samples (0 unreadable" in capsys.readouterr().out
    assert main(["-q", "pretrain", "--adapter", "image", "--data", str(shards), "--out", str(tmp_path / "run"),
                 "engine.max_steps=2", "engine.batch_size=4", *MICRO]) == 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("case", ["no files", "other adapter", "unfinished"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    archive = tmp_path / "archive"
    write_pngs(archive, 6)
    shards = tmp_path / "shards"
    if case == "no files":
        args = ["prepare", "--adapter", "image", "--data", str(tmp_path / "nothing"), "--out", str(shards)]
        expected = "nothing"
    else:
        assert main(["-q", "prepare", "--adapter", "image", "--data", str(archive), "--out", str(shards),
                     "--workers", "1", *MICRO]) == 0
        if case == "unfinished":
            text = (shards / "mae_domains_shards.json").read_text().replace('"complete": true', '"complete": false')
            (shards / "mae_domains_shards.json").write_text(text)
        args = ["pretrain", "--adapter", "medical.xray" if case == "other adapter" else "image", "--data",
                str(shards), "--out", str(tmp_path / "run"), *MICRO]
        expected = "prepared with adapter 'image'" if case == "other adapter" else "did not finish"
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err and str(shards if case != "no files" else "nothing") in err


def test_evaluate_and_embed_from_shards_equal_the_files(tmp_path):
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 5, seed=0)
    write_stripes_archive(archive, "test", 3, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    for split in ("train", "test"):
        config = load_config(None, [*RUN_MODEL, f"data.sources=[{archive / split}]"])
        prepare_archive(config, tmp_path / f"{split}_shards", workers=1, progress=False)
    run = tmp_path / "run"
    results = {}
    for origin, train, test in (("files", archive / "train", archive / "test"),
                                ("shards", tmp_path / "train_shards", tmp_path / "test_shards")):
        records = evaluate_checkpoint(run, ["knn", "linear_probe"], tmp_path / origin, train=[str(train)],
                                      test=[str(test)], device="cpu", settings={"k": 3, "epochs": 2})
        results[origin] = {(r.protocol, r.metric): r.value for r in records}
        assert main(["-q", "embed", "--run", str(run), "--data", str(test), "--out", str(tmp_path / f"{origin}.npz"),
                     "--device", "cpu"]) == 0
    assert results["files"] == results["shards"] and ("knn", "top1") in results["files"]
    files, shards = np.load(tmp_path / "files.npz"), np.load(tmp_path / "shards.npz")
    assert np.array_equal(files["embeddings"], shards["embeddings"])


def test_bucketed_adapter_from_shards(tmp_path, caplog):
    """Microscopy mixes 3- and 5-channel fields: the grid signatures come back from the manifest, batches
    never mix them, and the two bad files are skipped with the reasons they had when prepared."""
    bad = mixed_archive(tmp_path / "fields")
    config = load_config(str(RECIPE), [f"data.sources=[{tmp_path / 'fields'}]", "data.options.crops_per_image=2"])
    summary = prepare_archive(config, tmp_path / "shards", workers=1, progress=False)
    assert summary.bad == 2 * 2  # two crops of each bad file
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    raw_refs = adapter.discover(config.data.sources)
    reader, refs = open_archive(adapter, [str(tmp_path / "shards")])
    assert all(isinstance(r, ShardRef) for r in refs)
    assert sample_signatures(reader, refs) == sample_signatures(adapter, raw_refs)
    loader = pretraining_loader(reader, refs, None, batch_size=2, seed=0, max_steps=6,
                                signatures=sample_signatures(reader, refs))
    skipped = []
    for batch in loader:
        assert len({tuple(m["channel_names"]) for m in batch["meta"]}) == 1
        skipped += batch["skipped"]
    reasons = {s.source: s.reason for s in skipped}
    for source, fragment in bad.items():
        if source in reasons:
            assert fragment in reasons[source]
    assert reasons, "a bad field is drawn within 6 steps"


def test_prepare_refuses_an_archive_of_bad_samples_only(tmp_path, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(3):
        (archive / f"img{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["-q", "prepare", "--adapter", "image", "--data", str(archive), "--out", str(tmp_path / "shards"),
                 "--workers", "1", *MICRO]) == 2
    err = capsys.readouterr().err.strip()
    assert "none of the 3 samples" in err and "img0.png" in err and "\n" not in err


def test_evaluate_and_embed_keep_freed_host_memory(tmp_path, monkeypatch):
    """As the trainer does: freed buffers stay in the process for the next batch."""
    import mae_domains.evaluation.runner as runner_module
    import mae_domains.runs.embedding as embedding_module

    calls = []
    for module in (runner_module, embedding_module):
        monkeypatch.setattr(module, "retain_freed_host_memory", lambda: calls.append(1) or True)
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 2, seed=0)
    write_stripes_archive(archive, "test", 2, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    evaluate_checkpoint(tmp_path / "run", "knn", tmp_path / "eval", train=[str(archive / "train")],
                        test=[str(archive / "test")], device="cpu", settings={"k": 1})
    assert calls == [1]
    assert main(["-q", "embed", "--run", str(tmp_path / "run"), "--data", str(archive / "test"), "--out",
                 str(tmp_path / "e.npz"), "--device", "cpu"]) == 0
    assert calls == [1, 1]
