"""Cost of the bootstrap intervals of ``evaluate``: our numpy ROC-AUC / average precision against
scikit-learn's ``roc_auc_score`` / ``average_precision_score`` (with the guard for a class absent from a
resample), inside :func:`mae_domains.evaluation.metrics.classification_report`.

    python benchmarks/bench_metrics_bootstrap.py [--n 1000] [--classes 10] [--resamples 200]

Same scores, labels, seed and resamples for both; prints seconds per report, the ratio, and the largest
difference between the two implementations' summary values (both follow scikit-learn's definitions).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from mae_domains.evaluation import metrics


def sklearn_roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    targets = np.asarray(targets).astype(bool)
    return float("nan") if targets.all() or not targets.any() else float(roc_auc_score(targets, scores))


def sklearn_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    targets = np.asarray(targets).astype(bool)
    return float("nan") if not targets.any() else float(average_precision_score(targets, scores))


def timed_report(scores, targets, resamples: int) -> tuple[float, metrics.MetricReport]:
    start = time.perf_counter()
    report = metrics.classification_report(scores, targets, bootstrap_resamples=resamples, seed=0)
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    single = rng.integers(0, args.classes, args.n)
    multi = (rng.random((args.n, args.classes)) < 0.2).astype(np.float32)
    print("| task | numpy s | scikit-learn s | ratio | largest summary difference |")
    print("|---|---|---|---|---|")
    for task, targets, boost in (("single-label", single, np.eye(args.classes)[single]), ("multi-label", multi, multi)):
        scores = rng.random((args.n, args.classes)) + 0.5 * boost
        ours, binary = metrics.binary_roc_auc, metrics.binary_average_precision
        ours_s, ours_report = timed_report(scores, targets, args.resamples)
        metrics.binary_roc_auc, metrics.binary_average_precision = sklearn_roc_auc, sklearn_average_precision
        try:
            theirs_s, theirs_report = timed_report(scores, targets, args.resamples)
        finally:
            metrics.binary_roc_auc, metrics.binary_average_precision = ours, binary
        gap = max(abs(ours_report.summary[k] - theirs_report.summary[k]) for k in ours_report.summary)
        print(f"| {task} | {ours_s:.2f} | {theirs_s:.2f} | {theirs_s / ours_s:.1f}x | {gap:.1e} |")


if __name__ == "__main__":
    main()
