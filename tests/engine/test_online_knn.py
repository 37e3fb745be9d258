"""Online kNN during pretraining: the logged top-1 equals the kNN of the checkpointed encoder computed
offline, the run trains bitwise as one without it, and resumes exactly with it on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mae_domains.config import ConfigError, load_config
from mae_domains.data.loaders import evaluation_loader
from mae_domains.data.sample import NormStats
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv
from mae_domains.evaluation.knn import knn_accuracy
from mae_domains.runs import load_run

from .conftest import StopAfter, assert_tensors_equal, crash_at, load_checkpoint, make_config, write_pngs

STEPS = 6
BASE = ("engine.batch_size=4", f"engine.max_steps={STEPS}", "engine.checkpoint_every=3", "engine.log_every=100",
        "engine.figure_every=0", "model.drop_path_rate=0.2", "optim.warmup_steps=2", "engine.seed=5",
        "engine.threads=1")


def write_classes(root: Path, per_class: int, seed: int) -> Path:
    """Two classes of images: dark and bright (plus the noise of write_pngs)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, level in (("dark", 60), ("bright", 190)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = np.clip(level + rng.integers(-50, 50, (36, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{name}{i}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("online_knn")
    write_pngs(root / "archive", 24, seed=2)
    return {"archive": root / "archive", "train": write_classes(root / "train", 5, 0),
            "test": write_classes(root / "test", 3, 1)}


def knn_settings(data: dict[str, Path], every: int = 2) -> tuple[str, ...]:
    return (f"engine.online_knn.every={every}", f"engine.online_knn.train=[{data['train']}]",
            f"engine.online_knn.test=[{data['test']}]", "engine.online_knn.k=3", "engine.online_knn.batch_size=4")


@pytest.fixture(scope="module")
def knn_run(data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("online_knn") / "with_knn"
    pretrain(make_config(data["archive"], *BASE, *knn_settings(data)), run_dir)
    return run_dir


def offline_knn(run_dir: Path, data: dict[str, Path]) -> float:
    """kNN top-1 of the run's final encoder, through the evaluation package's functions."""
    loaded = load_run(run_dir)
    feats, labels = {}, {}
    for split in ("train", "test"):
        refs = sorted(data[split].glob("*/*.png"))
        names = [ref.parent.name for ref in refs]
        ids = [sorted(set(names)).index(n) for n in names]
        loader = evaluation_loader(loaded.adapter, refs, loaded.stats, batch_size=4, labels=ids)
        with torch.no_grad():
            feats[split] = torch.cat([loaded.adapter.embed(loaded.model, b, torch.device("cpu")) for b in loader])
        labels[split] = torch.tensor(ids)
    return knn_accuracy(feats["train"], labels["train"], feats["test"], labels["test"], k=3, temperature=0.07,
                        device="cpu")


def test_logged_top1_matches_offline_knn_of_the_checkpoint(knn_run, data):
    rows = {int(r["step"]): r for r in read_csv(knn_run / "metrics.csv")}
    assert {2, 4, 6} <= {s for s, r in rows.items() if r["knn_top1"]}
    assert not rows[1]["knn_top1"] and not rows[3]["knn_top1"]
    assert float(rows[STEPS]["knn_top1"]) == pytest.approx(offline_knn(knn_run, data), abs=1e-4)


def test_online_knn_does_not_change_training(knn_run, data, tmp_path):
    plain = tmp_path / "plain"
    pretrain(make_config(data["archive"], *BASE), plain)
    assert_tensors_equal(load_checkpoint(plain)["model"], load_checkpoint(knn_run)["model"], exact=True)
    assert all(not r["knn_top1"] for r in read_csv(plain / "metrics.csv"))


def test_resume_with_online_knn_is_exact(knn_run, data, tmp_path):
    cfg = make_config(data["archive"], *BASE, *knn_settings(data))
    run_dir = tmp_path / "resumed"
    with pytest.raises(StopAfter):
        pretrain(cfg, run_dir, on_step=crash_at(4))
    assert load_checkpoint(run_dir)["step"] == 3
    pretrain(cfg, run_dir, resume=True)
    assert_tensors_equal(load_checkpoint(knn_run)["model"], load_checkpoint(run_dir)["model"], exact=True)
    full = [(r["step"], r["knn_top1"], r["loss"]) for r in read_csv(knn_run / "metrics.csv")]
    assert [(r["step"], r["knn_top1"], r["loss"]) for r in read_csv(run_dir / "metrics.csv")] == full


def test_config_mistakes_are_named(data, tmp_path):
    with pytest.raises(ConfigError, match="engine.online_knn.train"):
        load_config(None, ["engine.online_knn.every=5"])
    cfg = make_config(data["archive"], *BASE, "engine.online_knn.every=2", f"engine.online_knn.train=[{data['train']}]")
    with pytest.raises(ConfigError, match="engine.online_knn.test is not set"):
        pretrain(cfg, tmp_path / "no_test")
    assert not (tmp_path / "no_test" / "metrics.csv").exists()
