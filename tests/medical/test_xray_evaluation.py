"""X-ray evaluation: ChestX-ray14-style label CSVs through the adapter, the adapter's protocol defaults,
RandAugment-style fine-tuning augmentation, and multi-label fine-tuning end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mae_domains.cli import main
from mae_domains.config import config_from_dict, dump_config, load_config
from mae_domains.data.sample import NormStats, Sample
from mae_domains.evaluation.finetune_transforms import FinetuneTransformReader
from mae_domains.labelled.label_lists import encode_labels, read_labelled
from mae_domains.evaluation.loading import labelled_splits
from mae_domains.evaluation.runner import adapter_protocol_settings, resolve_settings
from mae_domains.registry import get_adapter
from mae_medical import XrayAdapter
from mae_medical.randaugment import rand_augment
from mae_medical.synthetic import chest_xray

MODEL = {"preset": "micro", "img_size": 32, "patch_size": 8, "decoder_embed_dim": 32, "decoder_depth": 1,
         "decoder_num_heads": 4}
LABELS = ["No Finding", "Effusion", "Mass", "Effusion|Mass"]


def bound_xray() -> XrayAdapter:
    config = load_config(None, ["adapter=medical.xray", *(f"model.{k}={v}" for k, v in MODEL.items())])
    return get_adapter("medical.xray", config.data.options).bind(config)


def write_archive(root: Path, n: int = 24, n_test: int = 8) -> list[tuple[str, str, str]]:
    """PNG radiographs (Effusion brightens the bottom, Mass adds a bright disc) and their rows."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(n):
        labels = LABELS[i % 4]
        image = chest_xray(i)
        if "Effusion" in labels:
            image[44:] = np.clip(image[44:] + 0.5, 0, 1)
        if "Mass" in labels:
            image[(yy - 24) ** 2 + (xx - 20) ** 2 < 36] = 1.0
        name = f"{i:05d}_000.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "images" / name)
        rows.append((name, labels, "test" if i >= n - n_test else "train"))
    return rows


def write_csv(path: Path, rows, columns=("image", "labels", "split")) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(row[: len(columns)] for row in rows)
    return path


@pytest.fixture
def archive(tmp_path) -> tuple[Path, list]:
    rows = write_archive(tmp_path)
    return tmp_path, rows


def test_a_chestxray14_manifest_goes_through_the_adapter(archive):
    root, rows = archive
    manifest = write_csv(root / "labels.csv", [(f"images/{n}", lab, s) for n, lab, s in rows])
    adapter = bound_xray()
    found = read_labelled(adapter, [manifest])
    assert len(found.refs) == 24 and found.labels[0] == () and found.labels[3] == ("Effusion", "Mass")
    assert found.splits.count("train") == 16 and found.splits.count("test") == 8
    train, test = labelled_splits(adapter, {"name": "cxr", "manifest": str(manifest)}, root)
    y_train, y_test, classes, multilabel = encode_labels(train.labels, test.labels)
    assert multilabel and classes == ["Effusion", "Mass"]
    np.testing.assert_array_equal(np.stack(y_train[:4]), [[0, 0], [1, 0], [0, 1], [1, 1]])
    assert len(y_test) == 8


def test_two_label_csvs_give_the_split(archive):
    root, rows = archive
    train_csv = write_csv(root / "train.csv", [r for r in rows if r[2] == "train"], ("Image Index", "Finding Labels"))
    test_csv = write_csv(root / "test.csv", [r for r in rows if r[2] == "test"], ("Image Index", "Finding Labels"))
    train, test = labelled_splits(bound_xray(), {"name": "cxr", "train": [str(train_csv)], "test": [str(test_csv)]},
                                  root)
    assert len(train.refs) == 16 and len(test.refs) == 8  # bare file names found under the CSV's folder
    assert encode_labels(train.labels, test.labels)[2] == ["Effusion", "Mass"]


def test_protocol_defaults_of_the_adapter_sit_under_the_callers_settings():
    adapter = bound_xray()
    settings = resolve_settings("finetune", {"drop_path": 0.05}, adapter_protocol_settings(adapter, "finetune"))
    assert settings["layer_decay"] == 0.55 and settings["randaugment_magnitude"] == 6 and settings["pool"] == "avg"
    assert settings["drop_path"] == 0.05  # the caller wins
    assert resolve_settings("multilabel_map", {}, adapter.protocol_settings("multilabel_map"))["pool"] == "avg"
    assert resolve_settings("knn", {}, adapter.protocol_settings("knn"))["pool"] == "cls"  # no X-ray default

    class Misspelled(XrayAdapter):
        protocol_defaults = {"finetune": {"layer_decays": 0.5}}

    with pytest.raises(ValueError, match="layer_decays.*protocol_defaults.*layer_decay"):
        resolve_settings("finetune", {}, adapter_protocol_settings(Misspelled(), "finetune"))


def test_randaugment_is_seeded_and_only_in_the_finetune_transform():
    adapter = bound_xray()
    sample = adapter.synthetic_sample(3)
    stats = NormStats([0.4], [0.2])
    plain = adapter.transform(sample, 11, True, stats)
    off = adapter.finetune_transform(sample, 11, stats, {"randaugment_magnitude": 0})
    np.testing.assert_allclose(off.image, plain.image, atol=1e-6)  # magnitude 0: pretraining's transform
    changed = [not np.allclose(adapter.finetune_transform(sample, s, stats, {"randaugment_magnitude": 6}).image,
                               adapter.transform(sample, s, True, stats).image) for s in range(8)]
    assert sum(changed) >= 4
    again = adapter.finetune_transform(sample, 5, stats, {"randaugment_magnitude": 6})
    np.testing.assert_array_equal(again.image, adapter.finetune_transform(sample, 5, stats, {"randaugment_magnitude": 6}).image)
    reader = FinetuneTransformReader(adapter, {"randaugment_magnitude": 6})
    np.testing.assert_array_equal(reader.transform(sample, 5, True, stats).image, again.image)
    np.testing.assert_array_equal(reader.transform(sample, 5, False, stats).image,
                                  adapter.transform(sample, 5, False, stats).image)
    assert reader.name == "medical.xray"


def test_randaugment_ops_keep_invalid_pixels_out():
    image = np.random.default_rng(0).uniform(0, 1, (32, 32)).astype(np.float32)
    valid = np.zeros((32, 32), bool)
    valid[4:28, 4:28] = True
    for seed in range(20):
        out, moved, applied = rand_augment(np.where(valid, image, 0), valid.copy(), 10, seed)
        assert out.shape == (32, 32) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        assert moved is not None and not out[~moved].any()
    assert rand_augment(image, None, 0, 1)[2] == []
    for seed in range(10):  # an image without a validity mask keeps none (batches stay collatable)
        assert rand_augment(image, None, 10, seed)[1] is None


def test_the_finetune_loader_uses_the_settings(archive):
    from mae_domains.evaluation.loading import LoadedCheckpoint, build_archive_loaders

    root, rows = archive
    manifest = write_csv(root / "labels.csv", [(f"images/{n}", lab, s) for n, lab, s in rows])
    adapter = bound_xray()
    checkpoint = LoadedCheckpoint("x", "x:0", adapter_name=adapter.name, adapter=adapter, stats=NormStats([0.4], [0.25]))
    data = build_archive_loaders({"name": "cxr", "manifest": str(manifest)}, checkpoint, {"batch_size": 16}, root)
    plain = next(iter(data.train_augmented))["image"]
    off = next(iter(data.finetune_loader({"randaugment_magnitude": 0})))["image"]
    strong = next(iter(data.finetune_loader({"randaugment_magnitude": 9})))["image"]
    torch.testing.assert_close(off, plain)
    assert not torch.allclose(strong, plain)


def write_xray_run(run: Path, archive: Path) -> Path:
    """A micro ``medical.xray`` checkpoint (seeded, untrained) with its config, as the engine saves it."""
    config = config_from_dict({"adapter": "medical.xray", "model": dict(MODEL), "data": {"sources": [str(archive)]}})
    adapter = get_adapter("medical.xray").bind(config)
    torch.manual_seed(0)
    model = adapter.build_model(config.model, config.mask)
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "stats": NormStats([0.4], [0.25]).as_dict(),
                "adapter": "medical.xray", "step": 10, "version": "0.1.0"}, run / "checkpoint.pt")
    dump_config(config, run / "config.yaml")
    return run


@pytest.mark.slow
def test_multilabel_finetuning_from_a_manifest_through_the_cli(archive, capsys):
    root, rows = archive
    manifest = write_csv(root / "labels.csv", [(f"images/{n}", lab, s) for n, lab, s in rows])
    run = write_xray_run(root / "run", root / "images")
    out = root / "out"
    assert main(["evaluate", "--run", str(run), "--manifest", str(manifest), "--protocol", "finetune",
                 "--set", "epochs=2", "warmup_epochs=0", "--out", str(out), "--device", "cpu"]) == 0
    records = list(csv.DictReader((out / "results.csv").open()))
    summary = {r["metric"]: r for r in records if not r["class_name"]}
    per_class = {(r["metric"], r["class_name"]) for r in records if r["class_name"]}
    assert {"mean_roc_auc", "mAP"} <= set(summary)
    assert {("roc_auc", "Effusion"), ("roc_auc", "Mass")} <= per_class
    import json

    settings = json.loads(summary["mean_roc_auc"]["settings"])
    assert settings["layer_decay"] == 0.55 and settings["drop_path"] == 0.2  # the X-ray recipe
    assert settings["randaugment_magnitude"] == 6 and settings["epochs"] == 2

    from mae_domains.evaluation import evaluate_checkpoint

    probe = evaluate_checkpoint(run, "multilabel_map", root / "probe", manifest=manifest, device="cpu",
                                settings={"epochs": 3})
    summary = {r.metric: r for r in probe if r.class_name is None}
    assert {"mean_roc_auc", "mAP"} <= set(summary) and {r.class_name for r in probe if r.class_name} == {"Effusion", "Mass"}
    assert summary["mean_roc_auc"].settings["pool"] == "avg"  # the X-ray default, under a run's spelled-out eval section


def test_a_runs_default_eval_section_leaves_the_xray_pooling():
    import dataclasses

    from mae_domains.config import EvalConfig
    from mae_domains.evaluation.eval_defaults import RunEvalDefaults

    spelled_out = RunEvalDefaults(dataclasses.asdict(EvalConfig()))  # what every run's config.yaml holds
    assert "pool" not in spelled_out.settings("multilabel_map")
    assert spelled_out.settings("linear_probe")["epochs"] == 50  # differs from the probe's default: kept
    assert RunEvalDefaults({"pool": "avg"}).settings("knn") == {"pool": "avg"}
    adapter = bound_xray()
    resolved = resolve_settings("multilabel_map", spelled_out.settings("multilabel_map"),
                                adapter.protocol_settings("multilabel_map"))
    assert resolved["pool"] == "avg"
