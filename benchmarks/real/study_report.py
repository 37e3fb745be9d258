"""``results.md`` and plots of one field's study, from its ``eval/results.jsonl`` and pretraining record.

Seeds are combined per (checkpoint, dataset, protocol, metric): the value is the mean over seeds, the 95 %
interval runs from the lowest to the highest per-seed percentile-bootstrap bound (test images resampled,
1000 times), so it covers both the test-set sampling and the spread over seeds. kNN is deterministic and
runs once. "beats" in the verdicts means the two intervals do not overlap.

Paired comparison (classification, from ``eval/predictions/``): the final checkpoint minus each baseline on
the same bootstrap resamples of the test samples, seeds averaged inside each resample
(:func:`mae_domains.evaluation.paired.paired_difference`); "ahead" means the difference's 95 % interval lies
above 0. It needs the runs' saved test predictions; runs evaluated before they were saved are listed as such.

Dependent test samples: where the study file names a dataset's ``bootstrap_groups`` (crops of one slice, chips
of one spatial block), the "Does pretraining help?" intervals and the paired comparison resample whole
groups, from the saved predictions and their sample ids (:mod:`mae_domains.evaluation.sample_groups`); the
per-checkpoint tables keep the evaluation's per-sample intervals.

Segmentation on a handful of test images (at most ``PER_IMAGE_LIMIT``, e.g. two held-out volumes): the
report also lists each test image's Dice per checkpoint (mean over seeds, lowest to highest seed), from
``eval/per_image/``; with so few images the bootstrap interval says little.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mae_domains.evaluation.metrics import bootstrap_intervals, summary_metric_functions
from mae_domains.evaluation.paired import paired_difference
from mae_domains.evaluation.sample_groups import SampleGroups, read_groups

METRICS = ("balanced_accuracy", "macro_f1", "top1", "mean_roc_auc", "dice_mean", "iou_mean", "miou")
DENSE = ("dice_mean", "iou_mean", "miou")  # segmentation: intervals over test images or spatial blocks
BALANCED = ("balanced_accuracy", "macro_f1")
BOOTSTRAP_RESAMPLES = 1000
PER_IMAGE_LIMIT = 12  # segmentation test sets this small also list every test image's scores


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def combine(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(checkpoint, dataset, protocol, metric) -> mean, low, high, seeds, n_train, n_test, step."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("class_name") is None:
            groups[(r["checkpoint"], r["dataset"], r["protocol"], r["metric"])].append(r)
    out = {}
    for key, rows in groups.items():
        values = np.array([float(r["value"]) for r in rows])
        lows = [float(r["ci_low"]) for r in rows if r.get("ci_low") is not None]
        highs = [float(r["ci_high"]) for r in rows if r.get("ci_high") is not None]
        out[key] = {"mean": float(values.mean()), "low": min(lows) if lows else float(values.min()),
                    "high": max(highs) if highs else float(values.max()), "seeds": len(rows),
                    "n_train": rows[0].get("n_train"), "n_test": rows[0].get("n_test"), "step": rows[0].get("step")}
    return out


def fraction_of(dataset: str) -> float:
    match = re.search(r"@([\d.]+)%$", dataset)
    return float(match.group(1)) / 100 if match else 1.0


def base_of(dataset: str) -> str:
    return dataset.split("@")[0]


def cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['mean']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"


def verdict(mae: Mapping[str, Any] | None, other: Mapping[str, Any] | None) -> str:
    if mae is None or other is None:
        return "n/a"
    if mae["low"] > other["high"]:
        return "beats"
    if mae["high"] < other["low"]:
        return "loses"
    return "overlaps"


@dataclass
class Predictions:
    """A run's saved test predictions over its seeds: labels, one score array per seed, sample ids (None
    where the run saved none)."""

    labels: np.ndarray | None = None
    scores: list[np.ndarray] = dataclass_field(default_factory=list)
    sample_ids: np.ndarray | None = None


def load_predictions(eval_dir: Path, protocol: str, checkpoint: str, dataset: str) -> Predictions:
    """A run's saved test predictions, every seed; empty when none were saved."""
    out = Predictions()
    for path in sorted((eval_dir / "predictions").glob(f"{protocol}__{checkpoint}__{dataset}__seed*.npz")):
        with np.load(path, allow_pickle=False) as run:
            ids = run["sample_ids"] if "sample_ids" in run.files else None
            if out.labels is not None and (not np.array_equal(out.labels, run["labels"]) or
                                           (ids is not None and not np.array_equal(out.sample_ids, ids))):
                raise ValueError(f"{path}: test samples differ from the other seeds' (not the same test set)")
            out.labels, out.sample_ids = run["labels"], ids
            out.scores.append(run["scores"])
    return out


def groups_of_run(groups: SampleGroups | None, run: Predictions, what: str) -> np.ndarray | None:
    """The group of each test sample of ``run`` (None without ``groups``)."""
    if groups is None:
        return None
    if run.sample_ids is None:
        raise ValueError(f"{what}: its saved predictions have no sample ids, needed to resample {groups.unit}s; "
                         f"evaluate it again")
    return groups.of(run.sample_ids.tolist())


def grouped_intervals(run: Predictions, groups: np.ndarray, metrics: tuple[str, ...]) -> dict[str, tuple]:
    """metric -> (seed mean, lowest, highest per-seed bound) of ``run``, each seed's interval from one
    bootstrap over ``groups`` (seeded by the seed's index, as the evaluation seeds its own), all metrics on
    the same resamples."""
    functions = {m: f for m, f in summary_metric_functions(False, run.scores[0].shape[1]).items() if m in metrics}
    per_seed = [bootstrap_intervals(functions, [scores, run.labels], BOOTSTRAP_RESAMPLES, 0.95, seed, groups)
                for seed, scores in enumerate(run.scores)]
    return {m: (float(np.mean([f(scores[None], run.labels[None])[0] for scores in run.scores])),
                min(i[m][0] for i in per_seed), max(i[m][1] for i in per_seed)) for m, f in functions.items()}


def paired_cell(difference: Any) -> str:
    if difference is None:
        return "-"
    return (f"{difference.difference:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}] {difference.verdict} "
            f"({difference.wins}/{difference.pairs} seeds)")


def paired_comparisons(eval_dir: Path, final: str, protocol: str, dataset: str,
                       groups: SampleGroups | None = None) -> dict[str, dict[str, Any]]:
    """baseline -> metric -> PairedDifference of the final checkpoint against it, where both runs saved their
    test predictions on the same single-label test set; with ``groups``, resamples draw whole groups."""
    mae = load_predictions(eval_dir, protocol, final, dataset)
    out: dict[str, dict[str, Any]] = {}
    if mae.labels is None or mae.labels.ndim != 1:
        return out
    for baseline in ("random-init", "raw-pixels"):
        other = load_predictions(eval_dir, protocol, baseline, dataset)
        if other.labels is None:
            continue
        if not np.array_equal(mae.labels, other.labels) or (
                groups is not None and not np.array_equal(mae.sample_ids, other.sample_ids)):
            raise ValueError(f"{eval_dir}: {protocol} on {dataset}: {final} and {baseline} saw different test samples")
        sample_groups = groups_of_run(groups, mae, f"{protocol} on {dataset} ({final})")
        out[baseline] = paired_difference(mae.labels, mae.scores, other.scores, metrics=BALANCED,
                                          resamples=BOOTSTRAP_RESAMPLES, groups=sample_groups)
    return out


def fraction_points(entries: Mapping[tuple, Mapping[str, Any]], checkpoint: str, dataset: str, protocol: str,
                    metric: str) -> list[tuple[float, Mapping[str, Any]]]:
    """(label fraction, entry) of one checkpoint on every fraction of ``dataset``, by fraction."""
    return sorted(((fraction_of(d), v) for (c, d, p, m), v in entries.items()
                   if c == checkpoint and base_of(d) == dataset and p == protocol and m == metric),
                  key=lambda point: point[0])


def plot_curves(combined: Mapping[tuple, Mapping[str, Any]], final: str, plots: Path, field: str,
                regrouped: Mapping[tuple, Mapping[str, Any]] | None = None,
                groups: Mapping[str, SampleGroups] | None = None) -> list[str]:
    """Each metric against the pretraining step (per-sample intervals, as the per-checkpoint tables) and
    against the label fraction (the final checkpoint and the baselines; their ``regrouped`` entries where the
    dataset has ``groups``, as the headline table)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots.mkdir(parents=True, exist_ok=True)
    names = []
    keys = list(combined)
    protocols = sorted({k[2] for k in keys})
    datasets = sorted({base_of(k[1]) for k in keys})
    metric_of = lambda p: next((m for m in METRICS if any(k[2] == p and k[3] == m for k in keys)), None)  # noqa: E731
    for dataset in datasets:
        for protocol in protocols:
            metric = metric_of(protocol)
            if metric is None:
                continue
            steps = sorted((v["step"], v) for (c, d, p, m), v in combined.items()
                           if d == dataset and p == protocol and m == metric and c.startswith("mae-step"))
            if len(steps) > 1:
                fig, ax = plt.subplots(figsize=(5, 3.5))
                xs = [s for s, _ in steps]
                ax.errorbar(xs, [v["mean"] for _, v in steps], yerr=[[v["mean"] - v["low"] for _, v in steps],
                            [v["high"] - v["mean"] for _, v in steps]], marker="o", capsize=3, label="MAE")
                for baseline, style in (("random-init", "--"), ("raw-pixels", ":")):
                    b = combined.get((baseline, dataset, protocol, metric))
                    if b:
                        ax.axhline(b["mean"], linestyle=style, color="gray" if style == "--" else "black", label=baseline)
                ax.set_xlabel("pretraining step")
                ax.set_ylabel(metric)
                ax.set_title(f"{field}: {protocol} on {dataset}")
                ax.legend(fontsize=7)
                fig.tight_layout()
                name = f"{field}_{dataset}_{protocol}_vs_step.png"
                fig.savefig(plots / name, dpi=100)
                plt.close(fig)
                names.append(name)
            fig, ax = plt.subplots(figsize=(5, 3.5))
            drawn = False
            for checkpoint in (final, "random-init", "raw-pixels"):
                points = fraction_points({**combined, **(regrouped or {})}, checkpoint, dataset, protocol, metric)
                if len(points) > 1:
                    xs = [100 * f for f, _ in points]
                    ax.errorbar(xs, [v["mean"] for _, v in points], yerr=[[v["mean"] - v["low"] for _, v in points],
                                [v["high"] - v["mean"] for _, v in points]], marker="o", capsize=3, label=checkpoint)
                    drawn = True
            if drawn:
                ax.set_xscale("log")
                ax.set_xlabel("% of training labels")
                ax.set_ylabel(metric)
                unit = (groups or {}).get(dataset)
                ax.set_title(f"{field}: {protocol} on {dataset}" + (f" ({unit.unit}s resampled)" if unit else ""),
                             fontsize=9)
                ax.legend(fontsize=7)
                fig.tight_layout()
                name = f"{field}_{dataset}_{protocol}_vs_labels.png"
                fig.savefig(plots / name, dpi=100)
                names.append(name)
            plt.close(fig)
    return names


def study_groups(study: Mapping[str, Any], data_dir: Path | None) -> dict[str, SampleGroups]:
    """Dataset name -> its ``bootstrap_groups`` CSV (in ``data_dir``), read."""
    named = {str(e["name"]): e["bootstrap_groups"] for e in study["evaluate"].get("datasets", [])
             if e.get("bootstrap_groups")}
    if named and data_dir is None:
        raise ValueError("bootstrap_groups need the data folder")
    return {name: read_groups(data_dir / csv_path) for name, csv_path in named.items()}


def write_results(study: Mapping[str, Any], budget: str, out: Path, pretrained: Mapping[str, Any],
                  command: str, data_dir: Path | None = None) -> Path:
    """Write ``<out>/results.md`` (and ``<out>/plots``, ``<out>/headline.json``); return its path."""
    groups = study_groups(study, data_dir)
    records = read_records(out / "eval" / "results.jsonl")
    combined = combine(records)
    steps = sorted(int(s) for s in pretrained["kept"])
    final = f"mae-step{steps[-1]}"
    field = str(study["field"])
    eval_wall = json.loads((out / "eval" / "wall.json").read_text())["wall_s"] if (out / "eval" / "wall.json").exists() else None
    info = pretrained.get("machine", {})
    lines = [f"# {study.get('title', field)}", "",
             f"Reproduce: `{command}` (data: `{study.get('prepare', '')}`).", "",
             "## Run", "",
             f"- machine: {info.get('cpu')} ({info.get('cpus_available')} CPUs available, load average at the end "
             f"{', '.join(f'{x:.1f}' for x in info.get('load_average', []))}), {info.get('cuda') or 'no GPU'}; "
             f"{info.get('platform')}",
             f"- versions: Python {info.get('python')}, torch {info.get('torch')}, mae-domains {info.get('mae_domains')}",
             f"- pretraining: budget `{budget}`, {pretrained['steps']} steps at batch {pretrained.get('batch_size')} "
             f"({pretrained['steps'] * int(pretrained.get('batch_size') or 0)} samples), {pretrained['wall_s']:.0f} s wall; "
             f"checkpoints kept at steps {', '.join(map(str, steps))}",
             f"- evaluation: {eval_wall:.0f} s wall" if eval_wall is not None else "- evaluation: wall time not recorded",
             "- loss at the kept steps: " + ", ".join(
                 f"{s}: {pretrained['loss'][str(s)]:.4f}" for s in steps if str(s) in pretrained.get("loss", {})),
             "", "Values: mean over seeds [95 % interval: lowest to highest per-seed percentile-bootstrap bound, "
             "1000 resamples of the test set]. kNN is deterministic (one run); linear probe and fine-tuning ran "
             f"once per seed ({', '.join(map(str, study['evaluate'].get('seeds', [])))}).", ""]
    datasets = sorted({k[1] for k in combined}, key=lambda d: (base_of(d), -fraction_of(d)))
    protocols = sorted({k[2] for k in combined})
    for protocol in protocols:
        metrics = [m for m in METRICS if any(k[2] == protocol and k[3] == m for k in combined)]
        for dataset in datasets:
            rows = [c for c in dict.fromkeys(k[0] for k in combined if k[1] == dataset and k[2] == protocol)]
            if not rows:
                continue
            any_entry = next(combined[(rows[0], dataset, protocol, m)] for m in metrics if (rows[0], dataset, protocol, m) in combined)
            lines += [f"### {protocol} on {dataset} ({any_entry['n_train']} train, {any_entry['n_test']} test)", "",
                      "| checkpoint | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
            for checkpoint in sorted(rows, key=_order):
                lines.append(f"| {checkpoint} | " + " | ".join(cell(combined.get((checkpoint, dataset, protocol, m)))
                                                             for m in metrics) + " |")
            lines.append("")
            if any_entry["n_test"] <= PER_IMAGE_LIMIT:
                lines += per_image_table(out / "eval", protocol, dataset, sorted(rows, key=_order))
    headline, grouped_entries, grouped_runs = [], {}, {}
    lines += ["## Does pretraining help?", "",
              "Final checkpoint against each baseline on the class-balanced metrics and the threshold-free ROC-AUC, "
              "and on Dice / IoU for segmentation (fine-tuned from the final checkpoint and from random init only; "
              "intervals resample the test images) (beats / overlaps / loses: "
              "whether the 95 % intervals are disjoint)."]
    for name, table in groups.items():
        lines[-1] += (f" On {name}, test samples are not independent: here and in the paired comparison, every "
                      f"interval resamples whole {table.unit}s (cluster bootstrap; {table.unit}s from "
                      f"the study's `bootstrap_groups`), so it is wider than the per-sample intervals above.")
    lines += ["", "| protocol | dataset | metric | MAE | random init | raw pixels | vs random | vs pixels |",
              "|---|---|---|---|---|---|---|---|"]
    for protocol in protocols:
        for dataset in datasets:
            for metric in BALANCED + ("mean_roc_auc",) + DENSE:
                mae = combined.get((final, dataset, protocol, metric))
                if mae is None:
                    continue
                rnd, pix = combined.get(("random-init", dataset, protocol, metric)), combined.get(("raw-pixels", dataset, protocol, metric))
                table = groups.get(base_of(dataset))
                if table is not None and metric not in DENSE:
                    mae, rnd, pix = (regrouped(out / "eval", protocol, checkpoint, dataset, metric, entry, table,
                                               grouped_runs)
                                     for checkpoint, entry in ((final, mae), ("random-init", rnd), ("raw-pixels", pix)))
                    grouped_entries.update({(c, dataset, protocol, metric): e for c, e in
                                            ((final, mae), ("random-init", rnd), ("raw-pixels", pix)) if e})
                row = {"protocol": protocol, "dataset": dataset, "metric": metric, "mae": mae, "random": rnd,
                       "pixels": pix, "vs_random": verdict(mae, rnd), "vs_pixels": verdict(mae, pix),
                       "resampled": table.unit if table is not None and metric not in DENSE else "sample"}
                headline.append(row)
                lines.append(f"| {protocol} | {dataset} | {metric} | {cell(mae)} | {cell(rnd)} | {cell(pix)} | "
                             f"{row['vs_random']} | {row['vs_pixels']} |")
    lines += paired_section(out / "eval", final, protocols, datasets, combined, headline, groups)
    plots = plot_curves(combined, final, out / "plots", field, grouped_entries, groups)
    lines += ["", "## Plots", ""] + (["Against the pretraining step: the per-checkpoint tables' intervals; against "
                                      "the label fraction: the headline table's.", ""] if groups else []) + [
        f"![{name}]({name})" for name in plots] + [""]
    path = out / "results.md"
    path.write_text("\n".join(lines))
    (out / "headline.json").write_text(json.dumps({"field": field, "budget": budget, "final": final,
                                                   "rows": headline}, indent=2) + "\n")
    return path


def per_image_table(eval_dir: Path, protocol: str, dataset: str, checkpoints: list[str]) -> list[str]:
    """Dice of every test image per checkpoint from ``eval/per_image/`` (mean over seeds, lowest to highest
    seed); no lines where the runs wrote no per-image scores."""
    scores: dict[str, dict[str, list[float]]] = {}  # "<checkpoint> <dice column>" -> image -> one Dice per seed
    columns: list[str] = []
    for checkpoint in checkpoints:
        for path in sorted((eval_dir / "per_image").glob(f"{protocol}__{checkpoint}__{dataset}__seed*.csv")):
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    for column in (c for c in row if c.startswith("dice_")):
                        columns += [column] if column not in columns else []
                        value = float(row[column]) if row[column] not in ("", "nan") else float("nan")
                        scores.setdefault(f"{checkpoint} {column}", {}).setdefault(row["sample_id"], []).append(value)
    if not scores:
        return []
    images = list(dict.fromkeys(image for by_image in scores.values() for image in by_image))
    heads = [f"{checkpoint} {column}" for column in columns for checkpoint in checkpoints]
    lines = ["Per test image (mean over seeds, lowest to highest seed in brackets):", "",
             "| image | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for image in images:
        cells = []
        for head in heads:
            values = np.array(scores.get(head, {}).get(image, []), dtype=float)
            values = values[~np.isnan(values)]
            cells.append(f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]" if len(values) else "-")
        lines.append(f"| {Path(image).name} | " + " | ".join(cells) + " |")
    return lines + [""]


def regrouped(eval_dir: Path, protocol: str, checkpoint: str, dataset: str, metric: str,
              entry: Mapping[str, Any] | None, groups: SampleGroups, memo: dict[tuple, dict]) -> dict[str, Any] | None:
    """``entry`` with its interval from a bootstrap over ``groups`` (None stays None); each run's predictions
    are read, matched to their groups and resampled once for every headline metric (``memo``). The seeds'
    mean must be the evaluation's."""
    if entry is None:
        return None
    what = f"{protocol} on {dataset} ({checkpoint})"
    key = (protocol, checkpoint, dataset)
    if key not in memo:
        run = load_predictions(eval_dir, protocol, checkpoint, dataset)
        if run.labels is None:
            raise ValueError(f"{what}: no saved test predictions, needed to resample {groups.unit}s; "
                             f"evaluate it again")
        sample_groups = groups_of_run(groups, run, what)
        memo[key] = {"groups": int(len(np.unique(sample_groups))),
                     **grouped_intervals(run, sample_groups, BALANCED + ("mean_roc_auc",))}
    mean, low, high = memo[key][metric]
    if abs(mean - entry["mean"]) > 1e-4:
        raise ValueError(f"{what}: {metric} from the saved predictions ({mean:.4f}) is not the evaluation's "
                         f"({entry['mean']:.4f})")
    return {**entry, "low": low, "high": high, "groups": memo[key]["groups"]}


def paired_section(eval_dir: Path, final: str, protocols: list[str], datasets: list[str],
                   combined: Mapping[tuple, Any], headline: list[dict[str, Any]],
                   groups: Mapping[str, SampleGroups] | None = None) -> list[str]:
    """The paired-comparison table; each headline row of a compared metric gets ``paired_random`` /
    ``paired_pixels`` (difference, low, high, verdict, wins, pairs)."""
    lines = ["", "## Paired comparison (same test samples)", "",
             "Final checkpoint minus each baseline, mean over seeds, with a 95 % percentile-bootstrap interval from "
             "resampling the test samples once for both encoders (1000 resamples, seeds averaged in each); "
             "ahead / behind: the interval lies above / below 0; in brackets, the seeds in which the final "
             "checkpoint scored higher on the whole test set. This is the test of a difference; the side-by-side "
             "intervals above describe each encoder alone." + "".join(
                 f" On {name}, whole {table.unit}s are resampled." for name, table in (groups or {}).items()), "",
             "| protocol | dataset | metric | MAE - random init | MAE - raw pixels |", "|---|---|---|---|---|"]
    missing = []
    if not any(key[3] in BALANCED for key in combined):
        return lines[:3] + ["None: pairs are compared on saved classification predictions, and this study has "
                            "only segmentation (Dice per test image above)."]
    for protocol in protocols:
        for dataset in datasets:
            if not any((final, dataset, protocol, m) in combined for m in BALANCED):
                continue
            compared = paired_comparisons(eval_dir, final, protocol, dataset, (groups or {}).get(base_of(dataset)))
            if not compared:
                missing.append(f"{protocol} on {dataset}")
                continue
            for metric in BALANCED:
                rnd = compared.get("random-init", {}).get(metric)
                pix = compared.get("raw-pixels", {}).get(metric)
                lines.append(f"| {protocol} | {dataset} | {metric} | {paired_cell(rnd)} | {paired_cell(pix)} |")
                for row in headline:
                    if (row["protocol"], row["dataset"], row["metric"]) == (protocol, dataset, metric):
                        row.update({key: None if d is None else {
                            "difference": d.difference, "low": d.low, "high": d.high, "verdict": d.verdict,
                            "wins": d.wins, "pairs": d.pairs} for key, d in (("paired_random", rnd), ("paired_pixels", pix))})
    if missing:
        lines += ["", "No saved test predictions (evaluated before they were kept) for: " + "; ".join(missing) + "."]
    return lines


def _order(checkpoint: str) -> tuple[int, int]:
    if checkpoint.startswith("mae-step"):
        return (0, int(checkpoint[len("mae-step"):]))
    return (1, 0 if checkpoint == "random-init" else 1)
