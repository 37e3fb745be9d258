"""Shards read from a remote (``file://`` here: MosaicML Streaming's remote-plus-local-cache path, offline)
through a separate cache folder: the same batches as the local folder, each rank downloads only the shards
of its groups, one-line errors naming the URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mae_domains.shards.archive as archive_module
from mae_domains.cli import main
from mae_domains.data.loaders import pretraining_loader
from mae_domains.data.sampler import SeededBatchSampler
from mae_domains.engine import pretrain
from mae_domains.registry import get_adapter
from mae_domains.shards import open_archive, prepare_archive, shard_groups
from tests.engine.conftest import (
    MICRO, StopAfter, assert_tensors_equal, crash_at, load_checkpoint, make_config, write_pngs,
)
from tests.shards.test_prepared_archive import batches


@pytest.fixture
def prepared(tmp_path) -> Path:
    """24 PNGs in 8 shards of 3 samples (parts of 3), in a folder that stands for the object store."""
    archive = tmp_path / "archive"
    write_pngs(archive, 24, seed=4)
    shards = tmp_path / "store" / "shards"
    prepare_archive(make_config(archive), shards, workers=1, progress=False, part_size=3)
    return shards


def cached_shards(cache_root: Path) -> set[str]:
    return {str(p.relative_to(p.parents[1])) for p in cache_root.rglob("*.mds")}


def open_fresh(location: str, cache: Path, monkeypatch):
    """The archive as a new process (a rank on another machine) opens it, with its own cache."""
    monkeypatch.setenv("MAE_DOMAINS_SHARD_CACHE", str(cache))
    monkeypatch.setattr(archive_module, "_OPEN", {})
    config = make_config(location)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    return config, *open_archive(adapter, config.data.sources)


def test_remote_folder_through_a_separate_cache_gives_the_local_batches(prepared, tmp_path, monkeypatch):
    assert not list(prepared.rglob("*.mds")), "the statistics were read through a cache: only zstd shards here"
    local = batches(make_config(prepared), 4)
    config, reader, refs = open_fresh(f"file://{prepared}", tmp_path / "cache", monkeypatch)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == ["index.json"]
    stats = reader.compute_stats(refs, config.data.stats_samples, config.engine.seed)  # stored when prepared
    assert cached_shards(tmp_path / "cache") == set(), "the statistics come from the manifest, no shard is read"
    remote = batches(config, 4)
    for a, b in zip(local, remote):
        assert np.array_equal(a["image"].numpy(), b["image"].numpy()) and np.array_equal(a["index"], b["index"])
    assert cached_shards(tmp_path / "cache") and not list(prepared.rglob("*.tmp"))
    fresh = get_adapter("image", {}).bind(make_config(prepared)).compute_stats([r.source for r in refs], 16, 0)
    assert stats.mean == pytest.approx(fresh.mean) and stats.std == pytest.approx(fresh.std)


def test_shard_groups_give_the_same_batches_for_one_or_two_ranks_and_resume_by_step():
    groups = [g for g in range(4) for _ in range(7)]  # 4 groups of 7
    one = SeededBatchSampler(28, 8, seed=3, groups=groups, max_steps=6)
    two = [SeededBatchSampler(28, 4, seed=3, rank=r, world_size=2, groups=groups, max_steps=6) for r in range(2)]
    assert one.steps_per_epoch == 3  # 7 // 2 per group and epoch
    for step, batch in enumerate(one):
        assert batch == two[0].batch_for_step(step) + two[1].batch_for_step(step)
        assert [groups[i] for i, _ in batch] == [0, 0, 1, 1, 2, 2, 3, 3]
    resumed = SeededBatchSampler(28, 8, seed=3, groups=groups, start_step=4, max_steps=6)
    assert list(resumed) == [one.batch_for_step(4), one.batch_for_step(5)]
    with pytest.raises(ValueError, match="not a multiple of the 3 processes"):
        SeededBatchSampler(28, 4, rank=0, world_size=3, groups=groups)
    with pytest.raises(ValueError, match="does not divide the global batch 6"):
        SeededBatchSampler(28, 6, groups=groups)


def test_each_rank_downloads_only_the_shards_of_its_groups(prepared, tmp_path, monkeypatch):
    """Two ranks on two machines (caches), two shard groups: over two epochs rank r's cache holds exactly
    the shards of group r."""
    downloaded = {}
    for rank in range(2):
        cache = tmp_path / f"cache{rank}"
        config, reader, refs = open_fresh(f"file://{prepared}", cache, monkeypatch)
        groups = shard_groups(refs, 2)
        stats = reader.compute_stats(refs, config.data.stats_samples, config.engine.seed)
        loader = pretraining_loader(reader, refs, stats, batch_size=2, seed=0, rank=rank, world_size=2,
                                    max_steps=6, groups=groups)  # 4 steps per epoch: two epochs
        drawn = [int(i) for batch in loader for i in batch["index"]]
        assert {groups[i] for i in drawn} == {rank}
        downloaded[rank] = cached_shards(cache)
    parts = json.loads((prepared / "index.json").read_text())["shards"]
    assert len(parts) == 8
    assert downloaded[0] == {f"part-{k:05d}/shard.00000.mds" for k in range(4)}
    assert downloaded[1] == {f"part-{k:05d}/shard.00000.mds" for k in range(4, 8)}


@pytest.mark.parametrize("case", ["unreachable", "no index.json", "too many groups", "groups of files"])
def test_remote_errors_are_one_line_naming_the_url_exit_2(prepared, tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("MAE_DOMAINS_SHARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(archive_module, "_OPEN", {})
    url, extra, expected = f"file://{prepared}", [], "cannot open the shards' index.json"
    if case == "unreachable":
        url, expected = f"file://{tmp_path / 'nowhere'}", "mae_domains_shards.json: cannot download"
    elif case == "no index.json":
        (prepared / "index.json").unlink()
    elif case == "too many groups":
        extra, expected = ["data.shard_groups=16"], "holds 8 shard file(s)"
    else:
        url, extra, expected = str(tmp_path / "archive"), ["data.shard_groups=2"], "for source files set data.shard_groups=1"
    assert main(["-q", "pretrain", "--adapter", "image", "--data", url, "--out", str(tmp_path / "run"),
                 "engine.max_steps=1", "engine.batch_size=4", *MICRO, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err
    if case != "groups of files":
        assert url.split("://")[1] in err


@pytest.mark.slow
def test_two_ranks_from_a_remote_match_one_process_and_resume_bit_exact(prepared, tmp_path):
    """``torchrun`` with two gloo processes and two shard groups from ``file://`` through a cache: the weights
    of one process with the same global batch and groups; one process stopped mid-epoch and resumed from
    the remote: bitwise those of the uninterrupted run."""
    from tests.engine.test_distributed import SCRIPT, free_port

    common = ["engine.max_steps=5", "engine.checkpoint_every=2", "optim.warmup_steps=2", "engine.seed=5",
              "data.shard_groups=2", "data.num_workers=1"]
    url = f"file://{prepared}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
           "MAE_DOMAINS_SHARD_CACHE": str(tmp_path / "cache")}
    job = {"adapter": "image", "archive": url, "run_dir": str(tmp_path / "two"),
           "overrides": ["engine.batch_size=4", *common]}
    (tmp_path / "jobs.json").write_text(json.dumps([job]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(SCRIPT), str(tmp_path / "jobs.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    os.environ["MAE_DOMAINS_SHARD_CACHE"] = str(tmp_path / "cache_one")
    try:
        one = make_config(url, "engine.batch_size=8", *common)
        pretrain(one, tmp_path / "one")
        with pytest.raises(StopAfter):
            pretrain(one, tmp_path / "resumed", on_step=crash_at(3))
        pretrain(one, tmp_path / "resumed", resume=True)
    finally:
        del os.environ["MAE_DOMAINS_SHARD_CACHE"]
    two, one_run, resumed = (load_checkpoint(tmp_path / n) for n in ("two", "one", "resumed"))
    assert two["step"] == one_run["step"] == resumed["step"] == 5
    assert_tensors_equal(one_run["model"], two["model"], exact=False, atol=1e-5)
    assert_tensors_equal(one_run["model"], resumed["model"], exact=True)
