"""Cost of the bootstrap intervals of ``evaluate`` (scikit-learn's metrics), per study record.

    python benchmarks/bench_metrics_bootstrap.py [--n 415] [--resamples 1000] [--tasks single:2 single:7 multi:7]
                                                 [--per-stack 10] [--group-size 10]

Three ways to call scikit-learn on the same resamples (same scores, labels and seed), timed in this process:
- stacked: what :func:`~mae_domains.evaluation.metrics.classification_report` does, ``RESAMPLES_PER_STACK``
  resamples per scikit-learn call (each resample's class one column of a multi-label indicator matrix);
- per resample: the same code with stacks of one resample (one call per metric and resample);
- per class: a plain loop, one ``roc_auc_score`` / ``average_precision_score`` per class and resample and one
  ``f1_score`` / ``balanced_accuracy_score`` per resample, with the guard for a class absent from a resample
  (its time counts the intervals only);
- grouped: ``classification_report`` with ``groups`` (``--group-size`` consecutive samples per group, as crops
  of one slice): a cluster bootstrap, whose resamples vary in length, so one scikit-learn call per metric and
  resample (its intervals differ by design; not in the difference column).
Prints seconds per record (summary, intervals and per-class values), the ratio to the stacked calls, and the
largest difference between their interval bounds (0 expected: the same metric on the same rows).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from mae_domains.evaluation import metrics


def per_class_loop(scores: np.ndarray, targets: np.ndarray, resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """Intervals of the report's metrics, one scikit-learn call per class and resample."""
    num_classes = scores.shape[1]
    multilabel = targets.ndim == 2
    columns = targets if multilabel else np.eye(num_classes)[targets]
    values: dict[str, list[float]] = {}
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        rows = rng.integers(0, len(scores), len(scores))
        s, t, c = scores[rows], targets[rows], columns[rows]
        auc = [roc_auc_score(c[:, k], s[:, k]) for k in range(num_classes) if 0 < c[:, k].sum() < len(c)]
        found = {"mean_roc_auc": np.mean(auc) if auc else np.nan}
        if multilabel:
            ap = [average_precision_score(c[:, k], s[:, k]) for k in range(num_classes) if c[:, k].any()]
            found["mAP"] = np.mean(ap) if ap else np.nan
        else:
            predictions = s.argmax(axis=1)
            found["top1"] = np.mean(predictions == t)
            if num_classes > 5:
                found["top5"] = np.mean((np.argsort(-s, axis=1, kind="stable")[:, :5] == t[:, None]).any(axis=1))
            found["balanced_accuracy"] = balanced_accuracy_score(t, predictions)
            found["macro_f1"] = f1_score(t, predictions, average="macro", labels=range(num_classes), zero_division=0)
        for name, value in found.items():
            values.setdefault(name, []).append(value)
    return {name: metrics.percentile_interval(np.array(v, dtype=np.float64), resamples, 0.95)
            for name, v in values.items()}


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def task_data(task: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    kind, classes = task.split(":")
    classes = int(classes)
    if kind == "single":
        targets = rng.integers(0, classes, n)
        boost = np.eye(classes)[targets]
    else:
        targets = boost = (rng.random((n, classes)) < 0.2).astype(np.float32)
    return rng.random((n, classes)) + 0.5 * boost, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=415, help="test samples per record")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--tasks", nargs="+", default=["single:2", "single:7", "multi:7"],
                        help="single:CLASSES (integer labels) or multi:CLASSES (multi-hot)")
    parser.add_argument("--per-stack", type=int, default=metrics.RESAMPLES_PER_STACK,
                        help="resamples per scikit-learn call of the stacked way (to compare widths)")
    parser.add_argument("--group-size", type=int, default=10, help="samples per group of the grouped way")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    per_stack = metrics.RESAMPLES_PER_STACK = args.per_stack
    print(f"{args.n} test samples, {args.resamples} resamples, {per_stack} per stack; seconds per record")
    print("| task | stacked s | per resample s | per class s | grouped s | per resample / stacked "
          "| per class / stacked | grouped / stacked | largest interval difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        scores, targets = task_data(task, args.n, rng)
        stacked_s, report = timed(metrics.classification_report, scores, targets, None, args.resamples)
        metrics.RESAMPLES_PER_STACK = 1
        try:
            single_s, single = timed(metrics.classification_report, scores, targets, None, args.resamples)
        finally:
            metrics.RESAMPLES_PER_STACK = per_stack
        loop_s, loop = timed(per_class_loop, scores, targets, args.resamples, 0)
        groups = np.arange(args.n) // args.group_size
        grouped_s, _ = timed(metrics.classification_report, scores, targets, None, args.resamples, 0.95, 0, groups)
        gap = max(abs(a - b) for name, bounds in report.intervals.items()
                  for other in (single.intervals[name], loop[name]) for a, b in zip(bounds, other))
        print(f"| {task} | {stacked_s:.2f} | {single_s:.2f} | {loop_s:.2f} | {grouped_s:.2f} | "
              f"{single_s / stacked_s:.2f}x | {loop_s / stacked_s:.2f}x | {grouped_s / stacked_s:.2f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
