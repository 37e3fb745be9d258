"""Evaluation output that does not mislead: a second ``evaluate --out DIR`` adds its records to the first's
(a repeated evaluation replaces its own earlier records), the seed summary states n and, for one seed, the
bootstrap interval, and a metric with a single pretraining step gets no metric-vs-step plot."""

from __future__ import annotations

from mae_domains.cli import main
from mae_domains.evaluation.records import ResultRecord, plot_metric_vs_step, read_jsonl, render_markdown
from tests.evaluation.helpers import write_image_run, write_stripes_archive


def test_second_evaluate_into_the_same_folder_adds_its_records(tmp_path, capsys):
    archive = tmp_path / "stripes"
    write_stripes_archive(archive, "train", 5, seed=0)
    write_stripes_archive(archive, "test", 3, seed=1)
    write_image_run(tmp_path / "run" / "checkpoint.pt", archive, {})
    out = tmp_path / "results"
    common = ["-q", "evaluate", "--run", str(tmp_path / "run"), "--train", str(archive / "train"), "--test",
              str(archive / "test"), "--out", str(out), "--device", "cpu"]
    assert main([*common, "--protocol", "knn", "--set", "k=3"]) == 0
    first = read_jsonl(out / "results.jsonl")
    capsys.readouterr()
    assert main([*common, "--protocol", "linear_probe", "--set", "epochs=2", "warmup_epochs=0"]) == 0
    said = capsys.readouterr().out
    assert f"record(s) added to the {len(first)} already in results.jsonl" in said
    records = read_jsonl(out / "results.jsonl")
    assert {r.protocol for r in records} == {"knn", "linear_probe"}
    assert [r.to_dict() for r in records[:len(first)]] == [r.to_dict() for r in first]
    assert "| knn |" in (out / "results.md").read_text() and "| linear_probe |" in (out / "results.md").read_text()
    # the same evaluation again replaces its records instead of doubling them
    assert main([*common, "--protocol", "knn", "--set", "k=3"]) == 0
    again = read_jsonl(out / "results.jsonl")
    assert len(again) == len(records) and "of the same evaluation replaced" in capsys.readouterr().out


def record(seed: int, value: float, step: int | None = 100, ci=(None, None)) -> ResultRecord:
    return ResultRecord(adapter="image", checkpoint="run", dataset="shapes", protocol="knn", metric="top1",
                        value=value, settings={"k": 20}, seed=seed, n_test=20, step=step, ci_low=ci[0], ci_high=ci[1])


def test_one_seed_shows_n_and_its_bootstrap_interval():
    one = render_markdown([record(0, 1.0, ci=(0.85, 1.0))], aggregate_seeds=True)
    assert "1.0000 (n=1 seed; 95% CI [0.8500, 1.0000])" in one and "± 0.0000" not in one
    assert "(n=1 seed; no interval)" in render_markdown([record(0, 0.9)], aggregate_seeds=True)
    three = render_markdown([record(s, 0.6 + 0.01 * s) for s in range(3)], aggregate_seeds=True)
    assert "0.6100 ± 0.0100 (n=3 seeds)" in three


def test_a_single_step_draws_no_metric_vs_step_plot(tmp_path):
    assert plot_metric_vs_step([record(0, 0.9), record(1, 0.8)], "top1", tmp_path / "one.png") is None
    assert not (tmp_path / "one.png").exists()
    two = plot_metric_vs_step([record(0, 0.8, step=100), record(0, 0.9, step=200)], "top1", tmp_path / "two.png")
    assert two is not None and two.stat().st_size > 0
