"""Paired comparison of two encoders evaluated on the same test set.

The difference of a summary metric (each encoder's mean over its seeds) gets a percentile-bootstrap
interval from resampling the test samples once for both encoders: a hard sample lowers both, so the
interval of the difference is narrower than two separate intervals laid side by side, and an interval
above 0 says the first encoder scores higher on data like this test set. Seeds are averaged inside each
resample; how many seed pairs the first encoder wins on the whole test set is reported beside it. Where test
samples come in dependent groups (crops of one slice, chips of one spatial block), whole groups are resampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mae_domains.evaluation.metrics import as_numpy, bootstrap_intervals, summary_metric_functions


@dataclass(frozen=True)
class PairedDifference:
    """``difference`` = metric(a) - metric(b) on the whole test set (means over seeds), its interval,
    and in how many of the ``pairs`` seed pairs (i-th run of each) ``a`` scored higher."""

    metric: str
    difference: float
    low: float
    high: float
    wins: int
    pairs: int
    n_test: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "ahead"
        if self.high < 0:
            return "behind"
        return "no difference shown"


def _stacked(runs: Sequence[np.ndarray], n: int, name: str) -> np.ndarray:
    if not runs:
        raise ValueError(f"no runs for encoder {name}")
    arrays = [as_numpy(r).astype(np.float64) for r in runs]
    if any(a.ndim != 2 or a.shape[0] != n for a in arrays) or len({a.shape for a in arrays}) != 1:
        raise ValueError(f"encoder {name}: every run needs scores of shape ({n}, classes), got "
                         f"{[a.shape for a in arrays]}")
    return np.stack(arrays, axis=1)  # (N, runs, C): test samples first, so one resample takes all runs


def paired_difference(
    labels: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    metrics: Sequence[str] = ("balanced_accuracy", "macro_f1"),
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, PairedDifference]:
    """Metric of ``a`` minus metric of ``b`` for single-label ``labels`` ``(N,)``; ``scores_a`` / ``scores_b``:
    one ``(N, C)`` score array per run (seed) of each encoder, rows in the order of ``labels``. With
    ``groups`` (one label per sample), resamples draw whole groups (samples that are not independent)."""
    labels = as_numpy(labels).astype(np.int64)
    if labels.ndim != 1:
        raise ValueError(f"paired comparison takes single-label integer labels (N,), got shape {labels.shape}")
    n = len(labels)
    a, b = _stacked(scores_a, n, "a"), _stacked(scores_b, n, "b")
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"the encoders score different class counts: {a.shape[2]} and {b.shape[2]}")
    functions = summary_metric_functions(False, a.shape[2])
    unknown = sorted(set(metrics) - set(functions))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(functions)}")

    def difference(metric: str):
        function = functions[metric]

        def stacked(a_rows: np.ndarray, b_rows: np.ndarray, label_rows: np.ndarray) -> np.ndarray:
            mean_a = np.mean([function(a_rows[:, :, r], label_rows) for r in range(a_rows.shape[2])], axis=0)
            mean_b = np.mean([function(b_rows[:, :, r], label_rows) for r in range(b_rows.shape[2])], axis=0)
            return mean_a - mean_b
        return stacked

    differences = {m: difference(m) for m in metrics}
    intervals = bootstrap_intervals(differences, [a, b, labels], resamples, confidence, seed, groups)
    out = {}
    for metric in metrics:
        per_a = [float(functions[metric](a[None, :, r], labels[None])[0]) for r in range(a.shape[1])]
        per_b = [float(functions[metric](b[None, :, r], labels[None])[0]) for r in range(b.shape[1])]
        pairs = min(len(per_a), len(per_b))
        out[metric] = PairedDifference(
            metric=metric, difference=float(np.mean(per_a) - np.mean(per_b)), low=intervals[metric][0],
            high=intervals[metric][1], wins=sum(per_a[i] > per_b[i] for i in range(pairs)), pairs=pairs, n_test=n)
    return out
