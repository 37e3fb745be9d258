import json
import math
import random

import pytest

import mae_domains
from mae_domains.evaluation.records import (
    ResultRecord, aggregate_over_seeds, config_hash, read_jsonl, regenerate_reports, render_csv, render_markdown,
    write_jsonl, write_reports,
)


def make_records() -> list[ResultRecord]:
    records = []
    for step in (100, 200):
        for seed in (0, 1, 2):
            for protocol, settings in (("knn", {"k": 20, "temperature": 0.07}), ("linear_probe", {"epochs": 10})):
                value = 0.5 + step / 1000 + 0.01 * seed + (0.05 if protocol == "linear_probe" else 0)
                records.append(ResultRecord(
                    adapter="image", checkpoint=f"mae@{step}", dataset="shapes", protocol=protocol, metric="top1",
                    value=value, settings=settings, ci_low=value - 0.1, ci_high=value + 0.1, seed=seed,
                    n_train=40, n_test=20, step=step,
                ))
                for class_name, offset in (("circle", 0.0), ("square", 0.1)):
                    records.append(ResultRecord(
                        adapter="image", checkpoint=f"mae@{step}", dataset="shapes", protocol=protocol,
                        metric="roc_auc", value=0.7 + offset, settings=settings, seed=seed, n_train=40, n_test=20,
                        class_name=class_name, step=step,
                    ))
    records.append(ResultRecord(adapter="image", checkpoint="mae@200", dataset="shapes", protocol="knn",
                                metric="mean_roc_auc", value=float("nan"), settings={"k": 20, "temperature": 0.07}))
    return records


def test_record_fields_and_round_trip(tmp_path):
    records = make_records()
    first = records[0]
    assert first.version == mae_domains.__version__
    assert first.config_hash == config_hash("knn", {"k": 20, "temperature": 0.07})
    assert config_hash("knn", {"k": 20, "seed": 1}) == config_hash("knn", {"k": 20, "seed": 2})
    path = write_jsonl(records, tmp_path / "results.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(records) and all(json.loads(line) for line in lines)
    assert json.loads(lines[-1])["value"] is None  # NaN is stored as null
    loaded = read_jsonl(path)
    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in records]
    assert math.isnan(loaded[-1].value)


def test_same_records_give_byte_identical_tables(tmp_path):
    records = make_records()
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    assert render_markdown(records) == render_markdown(shuffled)
    assert render_csv(records) == render_csv(shuffled)
    assert render_markdown(records, aggregate_seeds=True) == render_markdown(shuffled, aggregate_seeds=True)
    first = write_reports(records, tmp_path / "a", plots=False)
    write_jsonl(shuffled, tmp_path / "b" / "results.jsonl")
    second = regenerate_reports(tmp_path / "b" / "results.jsonl", plots=False)
    for name in ("csv", "markdown", "summary"):
        assert first[name].read_bytes() == second[name].read_bytes()


def test_markdown_content():
    text = render_markdown(make_records(), title="Shapes")
    assert text.startswith("# Shapes\n")
    assert "| shapes | knn | mae@100 | 100 |" in text
    assert "[0.5000, 0.7000]" in text  # knn, step 100, seed 0: 0.6 +- 0.1
    assert "## Per class" in text and "| circle |" in text
    assert "## Settings" in text and '"temperature":0.07' in text
    summary = render_markdown(make_records(), aggregate_seeds=True, per_class=False)
    assert "0.6100 ± 0.0100 (n=3 seeds)" in summary and "0,1,2" in summary  # mean and std of 0.60/0.61/0.62


def test_aggregate_over_seeds():
    groups = aggregate_over_seeds(r for r in make_records() if r.class_name is None and r.metric == "top1")
    assert len(groups) == 4
    assert groups[0]["seeds"] == [0, 1, 2]
    assert groups[0]["mean"] == pytest.approx(0.61)


def test_plots_are_written(tmp_path):
    written = write_reports(make_records(), tmp_path)
    plots = sorted(p.name for k, p in written.items() if k.startswith("plot:"))
    assert plots == ["per_class_roc_auc_shapes.png", "top1_vs_step.png"]
    for name in plots:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_keys_are_rejected(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"adapter": "x", "metricc": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")
