from pathlib import Path

import numpy as np
import pytest
import yaml

from mae_domains.evaluation.loading import DownstreamData, LoadedCheckpoint
from mae_domains.evaluation.results_card import ModelCardInfo, model_card_from_checkpoint, render_model_card
from mae_domains.evaluation.records import read_jsonl, regenerate_reports
from mae_domains.evaluation.runner import (
    expand_runs, protocol_defaults, resolve_settings, run_benchmark, run_benchmark_file, run_protocol,
)
from tests.evaluation.helpers import (
    dict_loader, micro_encoder, pattern_images, write_image_run, write_stripes_archive,
)

FAST_PROBE = {"epochs": 10, "batch_size": 16, "warmup_epochs": 1}


@pytest.fixture(scope="module")
def loaders():
    train_images, train_labels = pattern_images(16, seed=0)
    test_images, test_labels = pattern_images(8, seed=1)
    return dict_loader(train_images, train_labels, 8, prefix="tr"), dict_loader(test_images, test_labels, 8, prefix="te")


def test_settings_defaults_and_unknown_keys():
    assert protocol_defaults("knn")["k"] == 20 and protocol_defaults("knn")["temperature"] == 0.07
    assert protocol_defaults("finetune")["pool"] == "avg" and protocol_defaults("finetune")["layer_decay"] == 0.75
    assert "seed" not in protocol_defaults("linear_probe")
    with pytest.raises(ValueError, match="did you mean 'temperature'"):
        resolve_settings("knn", {"temprature": 0.1})
    with pytest.raises(ValueError, match="unknown protocol"):
        resolve_settings("svm", {})


def test_run_protocol_knn_and_probe(loaders, tmp_path):
    train, test = loaders
    common = dict(encoder=micro_encoder(), class_names=["horizontal", "vertical"], adapter="image",
                  checkpoint="micro", dataset="stripes", feature_cache=tmp_path, device="cpu")
    knn = run_protocol("knn", train, test, settings={"k": 5, "bootstrap_resamples": 50}, **common)
    summary = {r.metric: r for r in knn if r.class_name is None}
    assert set(summary) == {"top1", "balanced_accuracy", "macro_f1", "mean_roc_auc"}
    top1 = summary["top1"]
    assert top1.n_train == 32 and top1.n_test == 16 and top1.settings["k"] == 5 and top1.settings["pool"] == "cls"
    assert top1.ci_low <= top1.value <= top1.ci_high
    assert {r.class_name for r in knn if r.class_name} == {"horizontal", "vertical"}
    assert len(list(Path(tmp_path).glob("*.json"))) == 2  # train and test features cached
    probe = run_protocol("linear_probe", train, test, settings=FAST_PROBE, seed=1, **common)
    assert len(list(Path(tmp_path).glob("*.json"))) == 2  # reused the cached features
    assert all(r.seed == 1 and r.protocol == "linear_probe" for r in probe)
    with pytest.raises(ValueError, match="ids"):
        run_protocol("knn", train, test, encoder=micro_encoder(), feature_cache=tmp_path)


def test_run_protocol_finetune(loaders):
    train, test = loaders
    records = run_protocol("finetune", train, test, encoder=micro_encoder(), class_names=["h", "v"], device="cpu",
                           settings={"epochs": 1, "warmup_epochs": 0, "bootstrap_resamples": 0})
    top1 = next(r for r in records if r.metric == "top1")
    assert top1.n_train == 32 and top1.ci_low is None and top1.settings["layer_decay"] == 0.75


def test_every_classification_protocol_keeps_the_test_sample_ids_with_its_predictions(loaders):
    train, test = loaders
    expected = [f"te{i:04d}" for i in range(16)]
    for protocol, settings in (("knn", {"k": 5}), ("linear_probe", FAST_PROBE),
                               ("finetune", {"epochs": 1, "warmup_epochs": 0})):
        details: dict = {}
        run_protocol(protocol, train, test, encoder=micro_encoder(), class_names=["h", "v"], device="cpu",
                     settings={**settings, "bootstrap_resamples": 0}, details=details)
        saved = details["test_predictions"]
        assert saved["sample_ids"].tolist() == expected, protocol
        assert len(saved["labels"]) == len(saved["scores"]) == 16


def _callback_spec() -> dict:
    return {
        "name": "callbacks",
        "seeds": [0, 1],
        "checkpoints": [{"name": "micro", "step": 10}, {"name": "micro-later", "step": 20}, {"name": "pixels"}],
        "datasets": [{"name": "stripes"}],
        "protocols": [{"name": "knn", "k": 5}, {"name": "probe", "protocol": "linear_probe", **FAST_PROBE}],
    }


def _load_checkpoint(spec, root, loaded):
    if spec["name"] == "pixels":
        return LoadedCheckpoint(name="pixels", checkpoint_id="pixels", kind="pixels")
    seed = 0 if spec["name"] == "micro" else 1
    return LoadedCheckpoint(name=spec["name"], checkpoint_id=f"micro-{seed}", model=micro_encoder(seed),
                            adapter_name="synthetic", step=spec["step"])


def _build_loaders(spec, checkpoint, options, root):
    train_images, train_labels = pattern_images(12, seed=0)
    test_images, test_labels = pattern_images(6, seed=1)
    return DownstreamData(train=dict_loader(train_images, train_labels, options["batch_size"]),
                          test=dict_loader(test_images, test_labels, options["batch_size"]),
                          class_names=["h", "v"], dataset_id="stripes-v1")


def test_benchmark_with_callbacks_and_regeneration(tmp_path):
    spec = _callback_spec()
    assert len(expand_runs(spec)) == 6
    records = run_benchmark(spec, tmp_path / "out", build_loaders=_build_loaders, load_checkpoint_fn=_load_checkpoint,
                            device="cpu", progress=False)
    out = tmp_path / "out"
    for name in ("results.jsonl", "results.csv", "results.md", "summary.md", "plots/top1_vs_step.png"):
        assert (out / name).is_file(), name
    top1 = [r for r in records if r.metric == "top1"]
    # kNN once, the probe once per seed, for each of three checkpoints.
    assert sorted((r.checkpoint, r.protocol, r.seed) for r in top1) == sorted(
        [(c, "knn", 0) for c in ("micro", "micro-later", "pixels")]
        + [(c, "linear_probe", s) for c in ("micro", "micro-later", "pixels") for s in (0, 1)])
    assert {r.step for r in top1 if r.checkpoint == "micro-later"} == {20}
    pixel_probe = [r.value for r in top1 if r.checkpoint == "pixels" and r.protocol == "linear_probe"]
    assert len(pixel_probe) == 2
    # Every run's test labels and scores, in test-set order, for paired comparisons; top-1 agrees.
    saved = sorted(p.name for p in (out / "predictions").glob("*.npz"))
    assert len(saved) == 9 and not list((out / "predictions").glob("*.partial"))
    for r in top1:
        entry = {"knn": "knn", "linear_probe": "probe"}[r.protocol]  # files are named by the spec's entry
        with np.load(out / "predictions" / f"{entry}__{r.checkpoint}__{r.dataset}__seed{r.seed}.npz",
                     allow_pickle=False) as run:
            assert run["scores"].shape == (r.n_test, 2) and run["scores"].dtype == np.float32
            assert (run["scores"].argmax(1) == run["labels"]).mean() == pytest.approx(r.value)
            labels, ids = run["labels"], run["sample_ids"]
            assert ids.tolist() == [f"s{i:04d}" for i in range(r.n_test)]  # the loader's ids, test-set order
        with np.load(out / "predictions" / f"knn__pixels__{r.dataset}__seed0.npz", allow_pickle=False) as other:
            assert np.array_equal(labels, other["labels"]) and np.array_equal(ids, other["sample_ids"])
    # Re-render from the JSON records: byte-identical tables.
    before = {name: (out / name).read_bytes() for name in ("results.csv", "results.md", "summary.md")}
    assert [r.to_dict() for r in read_jsonl(out / "results.jsonl")] == [r.to_dict() for r in records]
    regenerate_reports(out / "results.jsonl", tmp_path / "again", title="callbacks")
    for name, content in before.items():
        assert (tmp_path / "again" / name).read_bytes() == content, name


def test_a_benchmark_run_again_reuses_finished_runs_and_computes_only_what_changed(tmp_path, monkeypatch):
    import mae_domains.evaluation.runner as runner

    calls = []
    real_run_protocol = runner.run_protocol

    def counting(protocol, *args, **kwargs):
        calls.append((kwargs["checkpoint"], protocol, kwargs["seed"]))
        return real_run_protocol(protocol, *args, **kwargs)

    monkeypatch.setattr(runner, "run_protocol", counting)
    spec = _callback_spec()
    spec["checkpoints"] = spec["checkpoints"][:1]
    common = dict(build_loaders=_build_loaders, load_checkpoint_fn=_load_checkpoint, device="cpu", progress=False,
                  plots=False)
    first = run_benchmark(spec, tmp_path / "out", **common)
    assert sorted(calls) == [("micro", "knn", 0), ("micro", "linear_probe", 0), ("micro", "linear_probe", 1)]
    calls.clear()
    again = run_benchmark(spec, tmp_path / "out", **common)  # nothing changed: nothing runs
    assert calls == [] and [r.to_dict() for r in again] == [r.to_dict() for r in first]
    spec["protocols"][1]["epochs"] = 3  # new settings for the probe; a new seed
    spec["seeds"] = [0, 1, 2]
    third = run_benchmark(spec, tmp_path / "out", **common)
    assert sorted(calls) == [("micro", "linear_probe", s) for s in (0, 1, 2)]
    assert {r.settings["epochs"] for r in third if r.protocol == "linear_probe"} == {3}
    calls.clear()
    run_benchmark(spec, tmp_path / "out", resume=False, **common)  # resume off: all again
    assert len(calls) == 4


def test_bootstrap_groups_make_intervals_resample_whole_groups_and_key_the_run(tmp_path, monkeypatch):
    import mae_domains.evaluation.runner as runner
    from mae_domains.evaluation.metrics import classification_report
    from mae_domains.evaluation.sample_groups import write_groups

    calls = []
    real_run_protocol = runner.run_protocol
    monkeypatch.setattr(runner, "run_protocol", lambda *a, **k: calls.append(a[0]) or real_run_protocol(*a, **k))
    write_groups(tmp_path / "groups.csv", "slice", [(f"s{i:04d}", f"slice{i // 4}") for i in range(12)])
    spec = {"name": "grouped", "seeds": [0], "checkpoints": [{"name": "micro", "step": 10}],
            "datasets": [{"name": "stripes", "bootstrap_groups": "groups.csv"}],
            "protocols": [{"name": "knn", "k": 11, "temperature": 1.0, "bootstrap_resamples": 200}]}  # top-1 0.75
    common = dict(build_loaders=_build_loaders, load_checkpoint_fn=_load_checkpoint, device="cpu", progress=False,
                  plots=False, root=tmp_path)
    records = run_benchmark(spec, tmp_path / "out", **common)
    with np.load(tmp_path / "out" / "predictions" / "knn__micro__stripes__seed0.npz", allow_pickle=False) as run:
        scores, labels, ids = run["scores"], run["labels"], run["sample_ids"]
    assert len(ids) == 12
    slices = np.array([f"slice{int(i[1:]) // 4}" for i in ids])
    grouped = classification_report(scores, labels, ["h", "v"], 200, 0.95, 0, groups=slices).intervals
    per_sample = classification_report(scores, labels, ["h", "v"], 200, 0.95, 0).intervals
    summary = {r.metric: (r.ci_low, r.ci_high) for r in records if r.class_name is None}
    assert summary == grouped and summary != per_sample
    assert {r.settings["bootstrap_groups"] for r in records} == {"slice"}  # each record says what it resampled
    assert calls == ["knn"]
    again = run_benchmark(spec, tmp_path / "out", **common)  # same groups: reused
    assert calls == ["knn"] and [r.to_dict() for r in again] == [r.to_dict() for r in records]
    write_groups(tmp_path / "groups.csv", "slice", [(f"s{i:04d}", f"slice{i // 3}") for i in range(12)])
    run_benchmark(spec, tmp_path / "out", **common)  # other groups: other intervals, so run again
    assert calls == ["knn", "knn"]
    spec["datasets"][0]["bootstrap_groups"] = "missing.csv"
    with pytest.raises(ValueError, match="bootstrap_groups .*missing.csv not found"):
        run_benchmark(spec, tmp_path / "out2", **common)


def test_bootstrap_groups_need_sample_ids():
    from types import SimpleNamespace

    from mae_domains.evaluation.knn import KnnProtocol
    from mae_domains.protocols import ProtocolContext

    class Split(SimpleNamespace):  # frozen features without sample ids (a protocol plug-in's own provider)
        def __len__(self) -> int:
            return len(self.labels)

    split = Split(features=np.eye(4, dtype=np.float32), labels=np.array([0, 1, 0, 1]))
    context = ProtocolContext(train=[], test=[], features=lambda s: split, device="cpu",
                              settings={"k": 2, "temperature": 1.0, "class_weight": "none"},
                              test_groups=lambda ids: np.zeros(len(ids)))
    with pytest.raises(ValueError, match="need the test samples' ids"):
        KnnProtocol().run(context)


def test_benchmark_spec_errors(tmp_path):
    spec = _callback_spec()
    spec["protocol"] = []
    with pytest.raises(ValueError, match="did you mean 'protocols'"):
        run_benchmark(spec, tmp_path, _build_loaders, _load_checkpoint)
    spec = _callback_spec()
    spec["runs"] = [{"datasets": ["nope"]}]
    with pytest.raises(ValueError, match="unknown datasets"):
        run_benchmark(spec, tmp_path, _build_loaders, _load_checkpoint)


def test_benchmark_file_with_the_image_adapter(tmp_path):
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 10, seed=0)
    write_stripes_archive(archive, "test", 5, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    benchmark = {
        "name": "image adapter", "root": ".", "seeds": [0], "batch_size": 8, "device": "cpu", "progress": False,
        "checkpoints": [
            {"name": "mae", "path": "run"},
            {"name": "random", "init": "random", "like": "mae", "seed": 1},
            {"name": "pixels", "init": "pixels", "like": "mae"},
        ],
        "datasets": [{"name": "stripes", "train": "stripes/train", "test": "stripes/test"}],
        "protocols": [{"name": "knn", "k": 5}, {"name": "linear_probe", **FAST_PROBE},
                      {"name": "finetune", "epochs": 1, "warmup_epochs": 0}],
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(benchmark))
    records = run_benchmark_file(path, tmp_path / "results")
    top1 = {(r.checkpoint, r.protocol): r for r in records if r.metric == "top1"}
    assert set(top1) == {(c, p) for c in ("mae", "random", "pixels") for p in ("knn", "linear_probe", "finetune")} - {
        ("pixels", "finetune")}
    assert top1[("mae", "knn")].adapter == "image" and top1[("mae", "knn")].step == 123
    assert top1[("mae", "knn")].n_train == 20 and top1[("mae", "knn")].n_test == 10
    assert top1[("pixels", "knn")].value >= 0.5
    per_class = {r.class_name for r in records if r.class_name}
    assert per_class == {"horizontal", "vertical"}
    # Features were computed once per checkpoint and split, then reused across protocols.
    assert len(list((tmp_path / "results" / "feature_cache").glob("*.json"))) == 6
    # A model card for the checkpoint, with its results table.
    info = model_card_from_checkpoint(tmp_path / "run", name="mae")
    assert info.preset == "micro" and info.patch_size == 8 and info.step == 123 and len(info.normalization_mean) == 3
    card = render_model_card(info, records)
    assert "Patch size: 8" in card and "| stripes | knn | mae |" in card and "random" not in card.split("## Results")[1]


def test_model_card_from_run_config():
    info = ModelCardInfo.from_run(
        "s2-tiny", {"adapter": "remote_sensing.multispectral", "model": {"preset": "tiny", "patch_size": 16},
                    "mask": {"ratio": 0.75, "strategy": "independent"}, "data": {"sources": ["/data/s2"],
                    "options": {"bands": ["B2", "B3", "B4", "B8"], "gsd": 10}}},
        stats={"mean": [0.1, 0.2, 0.3, 0.4], "std": [1, 1, 1, 2], "count": 256},
    )
    card = render_model_card(info)
    assert "| 3 | B8 | 0.4 | 2 |" in card and "gsd = 10" in card and "independent masking" in card
    assert "No evaluation results recorded yet." in card


def test_example_benchmark_file_is_valid():
    from mae_domains.evaluation.runner import load_benchmark_file

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "downstream.yaml"
    spec = load_benchmark_file(path)
    runs = expand_runs(spec)
    assert ("raw-pixels", "landcover", "knn") in runs and ("raw-pixels", "landcover", "finetune") not in runs
    assert ("random-init", "landcover@10%", "finetune") in runs
    root = (path.parent / spec["root"]).resolve()
    for dataset in spec["datasets"]:  # the paths the preparation script writes (prepare_landsat.py --out default)
        assert dataset["train"] == "data/real/landsat/chips/train" and dataset["test"] == "data/real/landsat/chips/test"
    prepare = (root / "benchmarks" / "real" / "prepare_landsat.py").read_text()
    assert "\"data/real/landsat\"" in prepare  # the preparation writes where the spec reads


@pytest.fixture
def image_run(tmp_path):
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 6, seed=0)
    write_stripes_archive(archive, "test", 4, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    return tmp_path, archive


def test_cli_evaluate_and_export_round_trip(image_run, capsys):
    from mae_domains.cli import main
    from mae_domains.runs import export_run

    tmp_path, archive = image_run
    out = tmp_path / "cli"
    code = main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--train", str(archive / "train"),
                 "--test", str(archive / "test"), "--protocol", "knn", "--out", str(out), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| stripes | knn | run |" in printed and (out / "results.md").is_file()
    run_top1 = next(r for r in read_jsonl(out / "results.jsonl") if r.metric == "top1")

    # The exported encoder (timm keys, flat config.json) evaluates to the same numbers.
    paths = export_run(tmp_path / "run", tmp_path / "export")
    card = paths["model_card"].read_text()
    assert paths["model_card"].name == "MODEL_CARD.md" and "Patch size: 8" in card and "| 2 | blue |" in card
    spec = {"checkpoints": [{"name": "exported", "path": str(tmp_path / "export" / "encoder.safetensors")}],
            "datasets": [{"name": "stripes", "train": str(archive / "train"), "test": str(archive / "test")}],
            "protocols": [{"name": "knn"}], "device": "cpu"}
    records = run_benchmark(spec, tmp_path / "exported", plots=False)
    exported_top1 = next(r for r in records if r.metric == "top1")
    assert exported_top1.value == pytest.approx(run_top1.value) and exported_top1.step == 123
    assert main(["-q", "evaluate", "--run", str(tmp_path / "run"), "--protocol", "knn"]) == 2  # no --train/--test


def test_multilabel_manifest(image_run):
    tmp_path, archive = image_run
    rows = ["path,labels,split"]
    for split in ("train", "test"):
        for i, image in enumerate(sorted((archive / split).rglob("*.png"))):
            labels = [image.parent.name] + (["odd"] if i % 2 else [])
            rows.append(f"{image.relative_to(tmp_path)},{'|'.join(labels)},{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    spec = {"checkpoints": [{"name": "mae", "path": str(tmp_path / "run")}],
            "datasets": [{"name": "tags", "manifest": str(tmp_path / "manifest.csv")}],
            "protocols": [{"name": "knn", "k": 3}, {"name": "linear_probe", **FAST_PROBE}], "device": "cpu"}
    records = run_benchmark(spec, tmp_path / "ml", plots=False)
    summary = {(r.protocol, r.metric) for r in records if r.class_name is None}
    assert summary == {(p, m) for p in ("knn", "linear_probe") for m in ("mean_roc_auc", "mAP")}
    assert {r.class_name for r in records if r.class_name} == {"horizontal", "vertical", "odd"}
    assert all(r.n_train == 12 and r.n_test == 8 for r in records)


def test_evaluate_benchmark_honours_the_files_output_key(tmp_path, monkeypatch):
    from mae_domains.cli import main

    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 4, seed=0)
    write_stripes_archive(archive, "test", 2, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    spec = {"name": "output key", "root": ".", "seeds": [0], "batch_size": 8, "device": "cpu", "progress": False,
            "output": str(tmp_path / "from_file"), "checkpoints": [{"name": "mae", "path": "run"}],
            "datasets": [{"name": "stripes", "train": "stripes/train", "test": "stripes/test"}],
            "protocols": [{"name": "knn", "k": 3}]}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--benchmark", str(tmp_path / "bench.yaml")]) == 0
    assert (tmp_path / "from_file" / "results.jsonl").is_file() and not (tmp_path / "results").exists()
    assert main(["evaluate", "--benchmark", str(tmp_path / "bench.yaml"), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "results.jsonl").is_file()


def test_evaluation_leaves_bad_files_out_instead_of_substituting(tmp_path, caplog):
    """A corrupt test image is reported and left out: n_test counts only readable files, no duplicates."""
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 4, seed=0)
    write_stripes_archive(archive, "test", 3, seed=1)
    (archive / "test" / "vertical" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive)
    spec = {"name": "bad files", "root": ".", "seeds": [0], "batch_size": 4, "device": "cpu", "progress": False,
            "checkpoints": [{"name": "mae", "path": "run"}],
            "datasets": [{"name": "stripes", "train": "stripes/train", "test": "stripes/test"}],
            "protocols": [{"name": "knn", "k": 3}]}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    with caplog.at_level("WARNING"):
        records = run_benchmark_file(tmp_path / "bench.yaml", tmp_path / "results")
    top1 = next(r for r in records if r.metric == "top1")
    assert top1.n_test == 6 and top1.n_train == 8
    assert "broken.png" in caplog.text
