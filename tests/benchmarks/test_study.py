"""The study driver (benchmarks/real/study.py) and its report, offline on tiny prepared data."""

import json

import numpy as np
import pytest
import yaml

from tests.benchmarks.real_modules import real_module
from tests.benchmarks.test_prepare_landsat import wheel  # noqa: F401  (fixture)

study = real_module("study")
report = real_module("study_report")
prep = real_module("prepare_landsat")

TINY_STUDY = {
    "field": "remote_sensing", "title": "tiny", "data": "landsat", "prepare": "prepare_landsat.py",
    "recipe": {
        "adapter": "remote_sensing.multispectral",
        "model": {"preset": "micro", "img_size": 16, "patch_size": 8, "in_chans": 6, "norm_pix_loss": False},
        "mask": {"ratio": 0.75, "strategy": "independent"},
        "data": {"sources": ["pretrain.tif"], "num_workers": 0, "stats_samples": 8,
                 "options": {"groups": [["B2", "B3", "B4", "B8"], ["B11", "B12"]], "min_valid_fraction": 1.0,
                             "window_attempts": 32, "chips_per_scene": 16}},
        "optim": {"base_lr": 1.5e-3, "warmup_steps": 1},
        "engine": {"batch_size": 4, "log_every": 1, "figure_every": 0, "device": "cpu", "threads": 1},
    },
    "budgets": {"cpu": {"steps": 4, "keep": [2, 4]}},
    "evaluate": {
        "datasets": [{"name": "landcover", "train": "chips/train", "test": "chips/test"}],
        "label_fractions": [0.1, 1.0], "seeds": [0, 1], "frozen": ["knn", "linear_probe"], "trained": ["finetune"],
        "batch_size": 16,
        "protocols": [{"name": "knn", "k": 3}, {"name": "linear_probe", "epochs": 2, "warmup_epochs": 0,
                                                 "bootstrap_resamples": 20},
                      {"name": "finetune", "epochs": 1, "warmup_epochs": 0, "bootstrap_resamples": 20}],
    },
}


def test_benchmark_spec_has_every_step_baselines_and_label_fractions(tmp_path):
    (tmp_path / "chips" / "train").mkdir(parents=True)
    (tmp_path / "chips" / "test").mkdir(parents=True)
    pretrained = {"kept": {"2": "/r/steps/step0000002/checkpoint.pt", "4": "/r/steps/step0000004/checkpoint.pt"}}
    spec = study.benchmark_spec(TINY_STUDY, tmp_path, pretrained)
    assert [c["name"] for c in spec["checkpoints"]] == ["mae-step2", "mae-step4", "random-init", "raw-pixels"]
    assert spec["checkpoints"][0]["step"] == 2 and spec["checkpoints"][2]["like"] == "mae-step4"
    few = study.benchmark_spec(dict(TINY_STUDY, evaluate={**TINY_STUDY["evaluate"], "trained_fractions": [0.1]}),
                               tmp_path, pretrained)
    assert few["runs"][-1] == {"checkpoints": ["mae-step4", "random-init"], "datasets": ["landcover@10%"],
                               "protocols": ["finetune"]}
    datasets = {d["name"]: d for d in spec["datasets"]}
    assert datasets["landcover@10%"]["train_fraction"] == 0.1 and "train_fraction" not in datasets["landcover"]
    assert datasets["landcover"]["train"] == str(tmp_path / "chips" / "train")
    from mae_domains.evaluation.runner import expand_runs
    runs = set(expand_runs(spec))
    assert ("mae-step2", "landcover", "knn") in runs and ("mae-step2", "landcover@10%", "knn") not in runs
    assert ("random-init", "landcover@10%", "finetune") in runs and ("raw-pixels", "landcover", "finetune") not in runs
    assert ("mae-step4", "landcover@10%", "finetune") in runs and ("mae-step2", "landcover", "finetune") not in runs


def test_a_dataset_with_its_own_protocols_runs_only_those_on_the_final_checkpoint_and_random_init(tmp_path):
    (tmp_path / "chips" / "train").mkdir(parents=True)
    (tmp_path / "chips" / "test").mkdir(parents=True)
    (tmp_path / "masks.csv").write_text("image,label,split\n")
    evaluate = {**TINY_STUDY["evaluate"],
                "datasets": [*TINY_STUDY["evaluate"]["datasets"],
                             {"name": "masks", "manifest": "masks.csv", "protocols": ["segmentation"]}],
                "protocols": [*TINY_STUDY["evaluate"]["protocols"], {"name": "segmentation", "steps": 2}]}
    pretrained = {"kept": {"2": "/r/steps/step0000002/checkpoint.pt", "4": "/r/steps/step0000004/checkpoint.pt"}}
    spec = study.benchmark_spec(dict(TINY_STUDY, evaluate=evaluate), tmp_path, pretrained)
    masks = next(d for d in spec["datasets"] if d["name"] == "masks")
    assert masks == {"name": "masks", "manifest": str(tmp_path / "masks.csv")}  # no label fractions, no protocols key
    from mae_domains.evaluation.runner import expand_runs
    runs = set(expand_runs(spec))
    assert {r for r in runs if r[1] == "masks"} == {("mae-step4", "masks", "segmentation"),
                                                     ("random-init", "masks", "segmentation")}
    assert not any(r[2] == "segmentation" and r[1] != "masks" for r in runs)
    evaluate["datasets"][-1]["protocols"] = ["unet"]
    with pytest.raises(study.StudyError, match=r"datasets\[masks\].protocols: \['unet'\]"):
        study.benchmark_spec(dict(TINY_STUDY, evaluate=evaluate), tmp_path, pretrained)


@pytest.mark.parametrize("name", ["remote_sensing", "microscopy", "medical", "medical_fold_b", "medical_norm_pix",
                                  "medical_crops", "medical_crops_fold_b", "medical_volumes", "medical_volumes_fold_b"])
def test_the_shipped_study_files_make_valid_benchmark_specs(tmp_path, name):
    from pathlib import Path

    from mae_domains.evaluation.runner import expand_runs, validate_spec

    shipped = study.load_study(Path(study.__file__).parent / f"{name}.yaml")
    for entry in shipped["evaluate"]["datasets"]:  # the prepared layout, empty
        for key in ("train", "test", "manifest", "bootstrap_groups"):
            for value in ([entry[key]] if isinstance(entry.get(key), str) else entry.get(key, [])):
                (tmp_path / value).parent.mkdir(parents=True, exist_ok=True)
                is_file = key in ("manifest", "bootstrap_groups")
                (tmp_path / value).touch() if is_file else (tmp_path / value).mkdir(exist_ok=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("data: {options: {}}\n")  # read for adapter_options
    kept = {"100": str(tmp_path / "run" / "a.pt"), "400": str(tmp_path / "run" / "b.pt")}
    spec = study.benchmark_spec(shipped, tmp_path, {"kept": kept})
    validate_spec(spec)  # protocol settings are known keys
    assert not any("bootstrap_groups" in d for d in spec["datasets"])  # the report's, not the evaluation's
    grouped = {e["name"] for e in shipped["evaluate"]["datasets"] if e.get("bootstrap_groups")}
    assert grouped == {"remote_sensing": {"landcover"}, "microscopy": {"nuclei"}, "medical_crops": {"crops-fold-a"},
                       "medical_crops_fold_b": {"crops-fold-b"}}.get(name, set())
    masks = {r[1] for r in expand_runs(spec) if r[2] == "segmentation"}
    expected = {"microscopy": {"nuclei-masks"}, "medical": {"fold-a-masks"}, "medical_fold_b": {"fold-b-masks"},
                "medical_norm_pix": {"fold-a-masks"}, "medical_volumes": {"volumes-fold-a"},
                "medical_volumes_fold_b": {"volumes-fold-b"}}.get(name, set())
    assert masks == expected
    for dataset in masks:
        assert {r[0] for r in expand_runs(spec) if r[1] == dataset} == {"mae-step400", "random-init"}
    for source in shipped["recipe"]["data"]["sources"]:  # the recipe loads as a run config at every budget
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).touch() if "." in Path(source).name else (tmp_path / source).mkdir(exist_ok=True)
    for budget in shipped["budgets"]:
        config = study.run_config(shipped, tmp_path, study.budget_of(shipped, budget))
        assert config.engine.max_steps == shipped["budgets"][budget]["steps"]
        assert config.adapter == shipped["recipe"]["adapter"]


def test_bad_study_and_missing_data_end_in_one_line_with_exit_code_2(tmp_path, capsys):
    bad = dict(TINY_STUDY, evaluate={**TINY_STUDY["evaluate"], "fractions": [0.1]})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert study.main([str(tmp_path / "bad.yaml"), "--data-root", str(tmp_path)]) == 2
    assert "evaluate: unknown keys ['fractions']" in capsys.readouterr().err
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(TINY_STUDY))
    assert study.main([str(tmp_path / "ok.yaml"), "--data-root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not found; prepare it with" in err and len(err.splitlines()) == 1


def test_a_bad_entry_found_while_evaluating_ends_in_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch):
    import mae_domains.evaluation as evaluation

    def refuse(spec, out, root):
        raise ValueError("dataset nuclei-masks: mask_ids must be 'classes' or 'instances', got 'ids'")

    monkeypatch.setattr(evaluation, "run_benchmark", refuse)
    (tmp_path / "landsat" / "chips" / "train").mkdir(parents=True)
    (tmp_path / "landsat" / "chips" / "test").mkdir(parents=True)
    out = tmp_path / "out"
    (out / "pretrain").mkdir(parents=True)
    (out / "pretrain" / "study.json").write_text(json.dumps({"kept": {"4": "/r/step4/checkpoint.pt"}}))
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(TINY_STUDY))
    assert study.main([str(tmp_path / "ok.yaml"), "--data-root", str(tmp_path), "--out", str(out),
                       "--stages", "evaluate"]) == 2
    assert capsys.readouterr().err.strip() == ("error: dataset nuclei-masks: mask_ids must be 'classes' or "
                                              "'instances', got 'ids'")


def record(checkpoint, dataset, protocol, metric, value, low, high, seed=0, step=None):
    return {"checkpoint": checkpoint, "dataset": dataset, "protocol": protocol, "metric": metric, "value": value,
            "ci_low": low, "ci_high": high, "seed": seed, "class_name": None, "n_train": 10, "n_test": 5, "step": step}


def test_report_combines_seeds_and_says_beats_only_for_disjoint_intervals(tmp_path):
    records = [
        record("mae-step4", "landcover", "linear_probe", "macro_f1", 0.80, 0.72, 0.86, seed=0, step=4),
        record("mae-step4", "landcover", "linear_probe", "macro_f1", 0.84, 0.76, 0.90, seed=1, step=4),
        record("mae-step2", "landcover", "linear_probe", "macro_f1", 0.60, 0.50, 0.70, step=2),
        record("random-init", "landcover", "linear_probe", "macro_f1", 0.50, 0.40, 0.60),
        record("raw-pixels", "landcover", "linear_probe", "macro_f1", 0.70, 0.62, 0.78),
        record("mae-step4", "landcover@10%", "linear_probe", "macro_f1", 0.55, 0.45, 0.65, step=4),
        record("random-init", "landcover@10%", "linear_probe", "macro_f1", 0.45, 0.35, 0.55),
        record("mae-step4", "landcover", "knn", "balanced_accuracy", 0.9, 0.85, 0.95, step=4),
        record("random-init", "landcover", "knn", "balanced_accuracy", 0.5, 0.4, 0.6),
        record("raw-pixels", "landcover", "knn", "balanced_accuracy", 0.92, 0.88, 0.96),
        record("mae-step4", "landcover-map", "scene_segmentation", "miou", 0.40, 0.35, 0.45, step=4),
        record("random-init", "landcover-map", "scene_segmentation", "miou", 0.30, 0.25, 0.34),
    ]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pretrained = {"kept": {"2": "a", "4": "b"}, "steps": 4, "wall_s": 12.0, "batch_size": 4,
                  "loss": {"2": 0.9, "4": 0.8}, "machine": {"cpu": "x86_64", "cpus_available": 2}}
    path = report.write_results(TINY_STUDY, "cpu", tmp_path, pretrained, command="python study.py")
    text = path.read_text()
    assert "| mae-step4 | 0.820 [0.720, 0.900] |" in text  # mean of seeds, envelope of their intervals
    headline = json.loads((tmp_path / "headline.json").read_text())["rows"]
    full = next(r for r in headline if r["dataset"] == "landcover")
    assert (full["vs_random"], full["vs_pixels"]) == ("beats", "overlaps")
    assert next(r for r in headline if r["dataset"] == "landcover@10%")["vs_random"] == "overlaps"
    assert (tmp_path / "plots" / "remote_sensing_landcover_linear_probe_vs_step.png").is_file()
    assert (tmp_path / "plots" / "remote_sensing_landcover_linear_probe_vs_labels.png").is_file()
    table = real_module("readme_table").rows(tmp_path)  # balanced accuracy, and each segmentation's metric
    command = "`python benchmarks/real/study.py benchmarks/real/remote_sensing.yaml --budget cpu`"
    assert table == ["| remote_sensing (landcover) | knn | 100 % | balanced_accuracy | 0.900 [0.850, 0.950] | "
                     f"0.500 [0.400, 0.600] | 0.920 [0.880, 0.960] | beats / overlaps | - | - | {command} |",
                     "| remote_sensing (landcover-map) | scene_segmentation | 100 % | miou | 0.400 [0.350, 0.450] | "
                     f"0.300 [0.250, 0.340] | - | beats / n/a | - | - | {command} |"]
    assert ("No saved test predictions (evaluated before they were kept) for: knn on landcover; linear_probe on "
            "landcover; linear_probe on landcover@10%." in text)


def test_report_tables_and_verdicts_for_segmentation_records(tmp_path):
    records = [record(c, "nuclei-masks", "segmentation", m, v, v - 0.05, v + 0.05, seed=s, step=4 if c == "mae-step4" else None)
               for c, base in (("mae-step4", 0.7), ("random-init", 0.5)) for s in (0, 1)
               for m, v in (("dice_mean", base + 0.01 * s), ("iou_mean", base - 0.2 + 0.01 * s))]
    records.append({**record("mae-step4", "nuclei-masks", "segmentation", "dice", 0.7, None, None, step=4),
                    "class_name": "nucleus"})  # per-class values stay out of the tables
    records.append(record("mae-step4", "landcover", "knn", "balanced_accuracy", 0.9, 0.85, 0.95, step=4))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pretrained = {"kept": {"2": "a", "4": "b"}, "steps": 4, "wall_s": 12.0, "batch_size": 4,
                  "loss": {"2": 0.9, "4": 0.8}, "machine": {"cpu": "x86_64", "cpus_available": 2}}
    text = report.write_results(TINY_STUDY, "cpu", tmp_path, pretrained, command="python study.py").read_text()
    assert "### segmentation on nuclei-masks (10 train, 5 test)" in text
    assert "| checkpoint | dice_mean | iou_mean |" in text
    assert "| mae-step4 | 0.705 [0.650, 0.760] | 0.505 [0.450, 0.560] |" in text
    assert "| random-init | 0.505 [0.450, 0.560] | 0.305 [0.250, 0.360] |" in text
    headline = json.loads((tmp_path / "headline.json").read_text())["rows"]
    dense = {r["metric"]: (r["vs_random"], r["vs_pixels"]) for r in headline if r["protocol"] == "segmentation"}
    assert dense == {"dice_mean": ("beats", "n/a"), "iou_mean": ("beats", "n/a")}  # no raw-pixel segmentation
    assert not list((tmp_path / "plots").glob("*segmentation*"))  # one checkpoint step, one label fraction: no curve


@pytest.mark.slow
def test_report_lists_each_test_images_dice_where_the_segmentation_test_set_is_small(tmp_path):
    records = [record(c, "volumes", "segmentation", "dice_mean", 0.3, 0.1, 0.5, seed=s,
                      step=4 if c == "mae-step4" else None) for c in ("mae-step4", "random-init") for s in (0, 1)]
    (tmp_path / "eval" / "per_image").mkdir(parents=True)
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    dice = {("mae-step4", 0): (0.5, 0.1), ("mae-step4", 1): (0.3, 0.2), ("random-init", 0): (0.0, "nan"),
            ("random-init", 1): (0.2, "nan")}
    for (checkpoint, seed), (first, second) in dice.items():
        (tmp_path / "eval" / "per_image" / f"segmentation__{checkpoint}__volumes__seed{seed}.csv").write_text(
            f"sample_id,dice_tumour,iou_tumour\n/data/v/brain1.nii.gz,{first},0\n/data/v/lung1.nii.gz,{second},0\n")
    pretrained = {"kept": {"2": "a", "4": "b"}, "steps": 4, "wall_s": 12.0, "batch_size": 4,
                  "loss": {"2": 0.9, "4": 0.8}, "machine": {"cpu": "x86_64", "cpus_available": 2}}
    text = report.write_results(TINY_STUDY, "cpu", tmp_path, pretrained, command="python study.py").read_text()
    assert "| image | mae-step4 dice_tumour | random-init dice_tumour |" in text
    assert "| brain1.nii.gz | 0.400 [0.300, 0.500] | 0.100 [0.000, 0.200] |" in text
    assert "| lung1.nii.gz | 0.150 [0.100, 0.200] | - |" in text  # no tumour in the truth: no Dice
    assert "| protocol | dataset | metric | MAE - random init |" not in text  # nothing to pair: said in one line
    assert "this study has only segmentation" in text
    many = [{**r, "n_test": report.PER_IMAGE_LIMIT + 1} for r in records]
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in many))
    text = report.write_results(TINY_STUDY, "cpu", tmp_path, pretrained, command="python study.py").read_text()
    assert "| image |" not in text  # larger test sets: the summary and its interval only


def test_the_whole_study_runs_on_a_tiny_prepared_scene(wheel, tmp_path):  # noqa: F811
    path, pins = wheel
    prep.prepare(tmp_path / "data" / "landsat", str(path), pins)
    tiny = dict(TINY_STUDY, evaluate={**TINY_STUDY["evaluate"], "adapter_options": {"chips_per_scene": "auto"}})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny))
    out = tmp_path / "out"
    assert study.main([str(tmp_path / "study.yaml"), "--data-root", str(tmp_path / "data"), "--out", str(out),
                       "--report-to", str(tmp_path / "published")]) == 0
    kept = json.loads((out / "pretrain" / "study.json").read_text())["kept"]
    assert sorted(kept) == ["2", "4"]
    from mae_domains.weights import safe_torch_load

    steps = [safe_torch_load(kept[s])["step"] for s in ("2", "4")]
    assert steps == [2, 4]
    lines = [json.loads(line) for line in (out / "eval" / "results.jsonl").read_text().splitlines()]
    summary = {(r["checkpoint"], r["dataset"], r["protocol"]) for r in lines if r["class_name"] is None}
    assert ("mae-step2", "landcover", "knn") in summary and ("raw-pixels", "landcover@10%", "linear_probe") in summary
    assert ("random-init", "landcover@10%", "finetune") in summary
    n_train = {r["dataset"]: r["n_train"] for r in lines if r["protocol"] == "knn" and r["checkpoint"] == "mae-step4"}
    assert n_train["landcover@10%"] < n_train["landcover"]
    assert n_train["landcover"] == len(list((tmp_path / "data" / "landsat" / "chips" / "train").rglob("*.tif")))
    assert {r["metric"] for r in lines} >= {"balanced_accuracy", "macro_f1", "top1"}
    assert (tmp_path / "published" / "remote_sensing.md").read_text().startswith("# tiny")
    assert np.isfinite([r["value"] for r in lines]).all()


def test_adapter_options_override_the_reading_options_of_every_kept_checkpoint(tmp_path):
    for name in ("train", "test"):
        (tmp_path / "chips" / name).mkdir(parents=True)
    kept = {}
    for step in (2, 4):
        folder = tmp_path / "steps" / f"step{step:07d}"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(
            {"adapter": "remote_sensing.multispectral", "data": {"options": {"chips_per_scene": 2048, "flips": True}}}))
        kept[str(step)] = str(folder / "checkpoint.pt")
    with_options = dict(TINY_STUDY, evaluate={**TINY_STUDY["evaluate"], "adapter_options": {"chips_per_scene": "auto"}})
    spec = study.benchmark_spec(with_options, tmp_path, {"kept": kept})
    for entry in spec["checkpoints"][:2]:
        assert entry["config"]["data"]["options"] == {"chips_per_scene": "auto", "flips": True}
    assert "config" not in study.benchmark_spec(TINY_STUDY, tmp_path, {"kept": kept})["checkpoints"][0]


def test_the_remote_sensing_study_segments_the_scene_on_the_final_checkpoint_and_random_init(tmp_path):
    from mae_domains.evaluation.runner import expand_runs, validate_spec

    real = study.load_study(study.Path(study.__file__).parent / "remote_sensing.yaml")
    for name in ("chips/train", "chips/test"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("pairs_train.csv", "pairs_test.csv"):
        (tmp_path / name).write_text("image,label\n")
    (tmp_path / "chip_groups.csv").write_text("path,block\n")
    pretrained = {"kept": {"400": "/r/steps/step0000400/checkpoint.pt", "800": "/r/steps/step0000800/checkpoint.pt"}}
    spec = study.benchmark_spec(dict(real, evaluate={**real["evaluate"], "adapter_options": None}), tmp_path, pretrained)
    validate_spec(spec)  # every protocol setting is known to its protocol
    scene = next(d for d in spec["datasets"] if d["name"] == "landcover-map")
    assert scene == {"name": "landcover-map", "train": str(tmp_path / "pairs_train.csv"),
                     "test": str(tmp_path / "pairs_test.csv")}
    runs = {r for r in expand_runs(spec) if r[2] == "scene_segmentation"}
    assert runs == {("mae-step800", "landcover-map", "scene_segmentation"),
                    ("random-init", "landcover-map", "scene_segmentation")}


def test_report_shows_miou_with_its_verdict_against_random_init(tmp_path):
    records = [record("mae-step4", "landcover-map", "scene_segmentation", "miou", 0.40, 0.36, 0.44, seed=s, step=4)
               for s in (0, 1)]
    records += [record("random-init", "landcover-map", "scene_segmentation", "miou", 0.30, 0.26, 0.34, seed=s)
                for s in (0, 1)]
    records.append({**record("mae-step4", "landcover-map", "scene_segmentation", "iou", 0.7, None, None),
                    "class_name": "forest"})
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pretrained = {"kept": {"4": "b"}, "steps": 4, "wall_s": 12.0, "batch_size": 4, "loss": {"4": 0.8},
                  "machine": {"cpu": "x86_64", "cpus_available": 2}}
    text = report.write_results(TINY_STUDY, "cpu", tmp_path, pretrained, command="python study.py").read_text()
    assert "| mae-step4 | 0.400 [0.360, 0.440] |" in text and "| random-init | 0.300 [0.260, 0.340] |" in text
    row = json.loads((tmp_path / "headline.json").read_text())["rows"][0]
    assert (row["protocol"], row["metric"], row["vs_random"], row["vs_pixels"]) == (
        "scene_segmentation", "miou", "beats", "n/a")


def test_the_budgets_cpu_threads_apply_to_evaluation(tmp_path, monkeypatch):
    import torch

    import mae_domains.evaluation as evaluation

    (tmp_path / "chips" / "train").mkdir(parents=True)
    (tmp_path / "chips" / "test").mkdir(parents=True)
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    monkeypatch.setattr(evaluation, "run_benchmark", lambda spec, out, root: [])
    pretrained = {"kept": {"4": "/r/steps/step0000004/checkpoint.pt"}, "config": {"engine": {"threads": 1}}}
    study.evaluate_stage(TINY_STUDY, tmp_path, tmp_path / "out", pretrained)
    assert threads == [1] and (tmp_path / "out" / "eval" / "benchmark.yaml").is_file()
    study.evaluate_stage(TINY_STUDY, tmp_path, tmp_path / "out", {**pretrained, "config": {"engine": {"threads": None}}})
    assert threads == [1]  # unset (the GPU budget): torch's default


def test_report_pairs_the_final_checkpoint_with_each_baseline_on_saved_predictions(tmp_path):
    from mae_domains.evaluation.paired import paired_difference

    labels = np.array([0, 1] * 40)
    right = {"mae-step4": 70, "random-init": 56, "raw-pixels": 64}  # the first n samples predicted right
    records, predictions = [], tmp_path / "eval" / "predictions"
    predictions.mkdir(parents=True)
    for checkpoint, n_right in right.items():
        seeds = (0, 1) if checkpoint != "raw-pixels" else (0,)
        for seed in seeds:
            predicted = np.where(np.arange(80) < n_right - seed, labels, 1 - labels)
            np.savez(predictions / f"linear_probe__{checkpoint}__landcover__seed{seed}.npz", labels=labels,
                     scores=np.eye(2, dtype=np.float32)[predicted])
            value = float((predicted == labels).mean())
            records.append(record(checkpoint, "landcover", "linear_probe", "balanced_accuracy", value, value - 0.1,
                                  value + 0.1, seed=seed, step=4 if checkpoint == "mae-step4" else None))
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    pretrained = {"kept": {"4": "b"}, "steps": 4, "wall_s": 12.0, "batch_size": 4, "loss": {"4": 0.8},
                  "machine": {"cpu": "x86_64", "cpus_available": 2}}
    text = report.write_results(TINY_STUDY, "cpu", tmp_path, pretrained, command="python study.py").read_text()
    row = next(r for r in json.loads((tmp_path / "headline.json").read_text())["rows"]
               if r["metric"] == "balanced_accuracy")
    assert row["vs_random"] == "overlaps"  # side by side the intervals overlap ...
    assert row["paired_random"]["verdict"] == "ahead"  # ... but every resample favours the MAE
    assert row["paired_random"]["difference"] == pytest.approx((69.5 - 55.5) / 80)
    assert (row["paired_random"]["wins"], row["paired_random"]["pairs"]) == (2, 2)
    assert (row["paired_pixels"]["wins"], row["paired_pixels"]["pairs"]) == (1, 1)
    load = lambda c: [np.load(p)["scores"] for p in sorted(predictions.glob(f"linear_probe__{c}__*.npz"))]
    expected = paired_difference(labels, load("mae-step4"), load("raw-pixels"), metrics=("balanced_accuracy",))
    assert row["paired_pixels"]["low"] == expected["balanced_accuracy"].low
    assert "| linear_probe | landcover | balanced_accuracy | +0.175 [" in text
    assert "ahead (2/2 seeds)" in text
    table = real_module("readme_table").rows(tmp_path)
    assert "| overlaps / overlaps | +0.175 [" in table[0]


def test_report_refuses_predictions_of_different_test_sets(tmp_path):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for seed, labels in ((0, [0, 1, 0]), (1, [1, 1, 0])):
        np.savez(predictions / f"knn__random-init__landcover__seed{seed}.npz", labels=np.array(labels),
                 scores=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="test samples differ"):
        report.load_predictions(tmp_path, "knn", "random-init", "landcover")


def grouped_study_run(tmp_path, with_ids=True):
    """Saved predictions of 40 chips, each copied 5 times (200 test samples in 40 blocks): the MAE is right on
    30 chips, random init on 26, raw pixels on 20 (2 seeds for the trained encoders, 1 for the pixels)."""
    chips = np.arange(40)
    labels = np.repeat(chips % 2, 5)
    names = [f"chips/test/c/r{c:02d}_c{k}.tif" for c in chips for k in range(5)]
    from mae_domains.evaluation.sample_groups import write_groups

    (tmp_path / "landsat").mkdir()
    write_groups(tmp_path / "landsat" / "groups.csv", "block",
                               [(n, f"b{c}") for n, c in zip(names, np.repeat(chips, 5))])
    predictions = tmp_path / "eval" / "predictions"
    predictions.mkdir(parents=True)
    records = []
    for checkpoint, n_right in {"mae-step4": 30, "random-init": 26, "raw-pixels": 20}.items():
        for seed in ((0, 1) if checkpoint != "raw-pixels" else (0,)):
            right = np.repeat(chips < n_right - seed, 5)
            predicted = np.where(right, labels, 1 - labels)
            ids = {"sample_ids": np.array([f"{tmp_path}/landsat/{n}#0" for n in names])} if with_ids else {}
            np.savez(predictions / f"linear_probe__{checkpoint}__landcover__seed{seed}.npz", labels=labels,
                     scores=np.eye(2, dtype=np.float32)[predicted], **ids)
            value = float((predicted == labels).mean())
            records.append(record(checkpoint, "landcover", "linear_probe", "balanced_accuracy", value, value - 0.05,
                                  value + 0.05, seed=seed, step=4 if checkpoint == "mae-step4" else None))
    (tmp_path / "eval" / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    datasets = [{**TINY_STUDY["evaluate"]["datasets"][0], "bootstrap_groups": "groups.csv"}]
    grouped = {**TINY_STUDY, "evaluate": {**TINY_STUDY["evaluate"], "datasets": datasets}}
    pretrained = {"kept": {"4": "b"}, "steps": 4, "wall_s": 12.0, "batch_size": 4, "loss": {"4": 0.8},
                  "machine": {"cpu": "x86_64", "cpus_available": 2}}
    return grouped, pretrained, labels, names


def test_report_resamples_whole_groups_where_the_study_names_them(tmp_path, monkeypatch):
    from mae_domains.evaluation.metrics import bootstrap_ci, summary_metric_functions
    from mae_domains.evaluation.paired import paired_difference

    monkeypatch.setattr(report, "BOOTSTRAP_RESAMPLES", 300)
    grouped, pretrained, labels, names = grouped_study_run(tmp_path)
    text = report.write_results(grouped, "cpu", tmp_path, pretrained, command="python study.py",
                                data_dir=tmp_path / "landsat").read_text()
    assert "On landcover, test samples are not independent" in text and "whole blocks" in text
    row = next(r for r in json.loads((tmp_path / "headline.json").read_text())["rows"]
               if r["metric"] == "balanced_accuracy")
    assert row["resampled"] == "block" and row["mae"]["groups"] == 40
    assert row["mae"]["mean"] == pytest.approx((0.75 + 29 / 40) / 2)  # the evaluation's mean, unchanged
    # Each seed's interval resamples the 40 blocks (seed = the run's seed), then the envelope of the seeds.
    balanced = summary_metric_functions(False, 2)["balanced_accuracy"]
    blocks = np.repeat([f"b{c}" for c in range(40)], 5)  # the groups CSV's labels: the same draws
    per_seed = [bootstrap_ci(balanced, [np.eye(2)[np.where(np.repeat(np.arange(40) < 30 - s, 5), labels, 1 - labels)],
                                        labels], 300, 0.95, s, blocks) for s in (0, 1)]
    assert (row["mae"]["low"], row["mae"]["high"]) == (min(p[0] for p in per_seed), max(p[1] for p in per_seed))
    per_sample = bootstrap_ci(balanced, [np.eye(2)[np.where(np.repeat(np.arange(40) < 30, 5), labels, 1 - labels)],
                                         labels], 300, 0.95, 0)
    assert per_seed[0][1] - per_seed[0][0] > 1.8 * (per_sample[1] - per_sample[0])  # copies are not samples
    load = lambda c: [np.load(p)["scores"] for p in sorted((tmp_path / "eval" / "predictions").glob(f"*__{c}__*"))]
    expected = paired_difference(labels, load("mae-step4"), load("random-init"), metrics=("balanced_accuracy",),
                                 resamples=300, groups=blocks)["balanced_accuracy"]
    assert (row["paired_random"]["low"], row["paired_random"]["high"]) == (expected.low, expected.high)
    assert "On landcover, whole blocks are resampled." in text
    assert "against the label fraction: the headline table's" in text
    assert real_module("readme_table").rows(tmp_path)[0].startswith(
        "| remote_sensing (landcover; blocks resampled) | linear_probe | 100 % | balanced_accuracy |")


def test_the_label_fraction_plot_takes_the_regrouped_entries_where_there_are_some():
    per_sample = {("mae-step4", d, "knn", "balanced_accuracy"): {"mean": 0.8, "low": 0.75, "high": 0.85}
                  for d in ("landcover", "landcover@10%")}
    grouped = {("mae-step4", "landcover", "knn", "balanced_accuracy"): {"mean": 0.8, "low": 0.6, "high": 0.9}}
    points = report.fraction_points({**per_sample, **grouped}, "mae-step4", "landcover", "knn", "balanced_accuracy")
    assert [(f, e["low"]) for f, e in points] == [(0.1, 0.75), (1.0, 0.6)]


def test_report_asks_for_sample_ids_where_groups_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "BOOTSTRAP_RESAMPLES", 20)
    grouped, pretrained, _, _ = grouped_study_run(tmp_path, with_ids=False)
    with pytest.raises(ValueError, match="no sample ids, needed to resample blocks; evaluate it again"):
        report.write_results(grouped, "cpu", tmp_path, pretrained, command="x", data_dir=tmp_path / "landsat")
