"""Classification metrics on plain arrays: top-k accuracy, macro-F1, ROC-AUC, mAP, bootstrap intervals.

Scores are ``(N, C)`` arrays (higher = more likely). Single-label targets are integer labels ``(N,)``;
multi-label targets are multi-hot ``(N, C)``. Each function follows scikit-learn's definition (the tests
compare against it) but needs nothing beyond numpy and scipy, so it also runs on bootstrap resamples
where a class may be missing: such classes are skipped and reported, never silently counted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from mae_domains.protocols import ProtocolContext, ProtocolResult

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor | Sequence
AUTO_BOOTSTRAP_MAX_TEST = 5000  # "auto" bootstraps test sets up to this size (1000 resamples)
# Settings of :func:`score_result` that every protocol takes: bootstrap resamples and their confidence.
REPORT_DEFAULTS = {"bootstrap_resamples": "auto", "confidence": 0.95}


def as_numpy(values: ArrayLike) -> np.ndarray:
    """A numpy view of a tensor (moved to CPU, float32 upcast kept) or any array-like."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int = 1) -> float:
    """Share of samples whose true label is among the ``k`` highest scores."""
    scores, labels = as_numpy(scores), as_numpy(labels).astype(np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"expected scores (N, C) and labels (N,), got {scores.shape} and {labels.shape}")
    k = min(k, scores.shape[1])
    # Stable sort of the negated scores: on ties the lower class index ranks first.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Share of exact matches between predicted and true labels."""
    predictions, labels = as_numpy(predictions), as_numpy(labels)
    return float((predictions == labels).mean())


def per_class_f1(predictions: ArrayLike, labels: ArrayLike, classes: Sequence[int] | None = None) -> dict[int, float]:
    """F1 per class (0 where precision and recall are both undefined, like scikit-learn)."""
    predictions, labels = as_numpy(predictions).astype(np.int64), as_numpy(labels).astype(np.int64)
    if classes is None:
        classes = np.union1d(np.unique(labels), np.unique(predictions)).tolist()
    out: dict[int, float] = {}
    for c in classes:
        tp = float(np.sum((predictions == c) & (labels == c)))
        fp = float(np.sum((predictions == c) & (labels != c)))
        fn = float(np.sum((predictions != c) & (labels == c)))
        denominator = 2 * tp + fp + fn
        out[int(c)] = 2 * tp / denominator if denominator > 0 else 0.0
    return out


def macro_f1(predictions: ArrayLike, labels: ArrayLike, classes: Sequence[int] | None = None) -> float:
    """Unweighted mean of per-class F1; by default over the classes seen in labels or predictions
    (scikit-learn's ``f1_score(average="macro")``)."""
    scores = per_class_f1(predictions, labels, classes)
    return float(np.mean(list(scores.values()))) if scores else float("nan")


def balanced_accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's ``balanced_accuracy_score``): each
    class counts equally however rare it is, so a majority-class guess scores 1 / number of classes."""
    predictions, labels = as_numpy(predictions), as_numpy(labels)
    present = np.unique(labels)
    if present.size == 0:
        return float("nan")
    return float(np.mean([np.mean(predictions[labels == c] == c) for c in present]))


def binary_roc_auc(scores: ArrayLike, targets: ArrayLike) -> float:
    """ROC-AUC of one binary problem (Mann-Whitney U with average ranks for ties); NaN if only one
    target value is present."""
    scores, targets = as_numpy(scores).astype(np.float64), as_numpy(targets).astype(bool)
    n_pos = int(targets.sum())
    n_neg = targets.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[targets].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_average_precision(scores: ArrayLike, targets: ArrayLike) -> float:
    """Average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds (scikit-learn's
    definition, no interpolation); NaN if there are no positives."""
    scores, targets = as_numpy(scores).astype(np.float64), as_numpy(targets).astype(bool)
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_targets = scores[order], targets[order]
    # The last index of each run of tied scores is one threshold.
    threshold_ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    true_pos = np.cumsum(sorted_targets)[threshold_ends]
    predicted_pos = threshold_ends + 1
    precision = true_pos / predicted_pos
    recall = true_pos / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def one_hot(labels: ArrayLike, num_classes: int) -> np.ndarray:
    labels = as_numpy(labels).astype(np.int64)
    out = np.zeros((labels.size, num_classes), dtype=np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out


def _per_class(binary_metric: Callable[[np.ndarray, np.ndarray], float], scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    scores = as_numpy(scores)
    targets = as_numpy(targets)
    if targets.ndim == 1:  # single-label: one-vs-rest
        targets = one_hot(targets, scores.shape[1])
    if targets.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in shape")
    return np.array([binary_metric(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])


def per_class_roc_auc(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """ROC-AUC per class (one-vs-rest for integer labels); NaN where a class has one target value only."""
    return _per_class(binary_roc_auc, scores, targets)


def per_class_average_precision(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Average precision per class; NaN where a class has no positive sample."""
    return _per_class(binary_average_precision, scores, targets)


def _mean_skipping_nan(values: np.ndarray, what: str, quiet: bool) -> float:
    skipped = np.nonzero(np.isnan(values))[0]
    if skipped.size == values.size:
        return float("nan")
    if skipped.size and not quiet:
        log.warning("%s: skipped classes %s (only one target value in this set)", what, skipped.tolist())
    return float(np.nanmean(values))


def mean_roc_auc(scores: ArrayLike, targets: ArrayLike, quiet: bool = False) -> float:
    """Mean per-class ROC-AUC over the classes where it is defined (skipped classes are logged)."""
    return _mean_skipping_nan(per_class_roc_auc(scores, targets), "mean ROC-AUC", quiet)


def mean_average_precision(scores: ArrayLike, targets: ArrayLike, quiet: bool = False) -> float:
    """mAP: mean per-class average precision over the classes with at least one positive."""
    return _mean_skipping_nan(per_class_average_precision(scores, targets), "mAP", quiet)


def bootstrap_ci(
    metric: Callable[..., float],
    arrays: Sequence[ArrayLike],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(*arrays)``, resampling rows with replacement.

    Resamples where the metric is undefined (NaN, e.g. a class without positives) are dropped; if fewer
    than half remain, the interval is ``(nan, nan)``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arrays = [as_numpy(a) for a in arrays]
    n = arrays[0].shape[0]
    if n == 0 or n_resamples <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        rows = rng.integers(0, n, size=n)
        value = metric(*(a[rows] for a in arrays))
        if not math.isnan(value):
            values.append(value)
    if len(values) < n_resamples / 2:
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return (float(low), float(high))


def _metric_functions(multilabel: bool, num_classes: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """Summary metrics for a task: name -> f(scores, targets)."""
    if multilabel:
        return {
            "mean_roc_auc": lambda s, t: mean_roc_auc(s, t, quiet=True),
            "mAP": lambda s, t: mean_average_precision(s, t, quiet=True),
        }
    metrics: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "top1": lambda s, t: top_k_accuracy(s, t, 1),
    }
    if num_classes > 5:  # top-5 is always 1 with five classes or fewer
        metrics["top5"] = lambda s, t: top_k_accuracy(s, t, 5)
    metrics["balanced_accuracy"] = lambda s, t: balanced_accuracy(np.argmax(s, axis=1), t)
    metrics["macro_f1"] = lambda s, t: macro_f1(np.argmax(s, axis=1), t, classes=range(num_classes))
    metrics["mean_roc_auc"] = lambda s, t: mean_roc_auc(s, t, quiet=True)
    return metrics


@dataclass
class MetricReport:
    """Summary metrics, optional bootstrap intervals, per-class values and the classes skipped."""

    summary: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped_classes: dict[str, list[str]] = field(default_factory=dict)


def classification_report(
    scores: ArrayLike,
    targets: ArrayLike,
    class_names: Sequence[str] | None = None,
    bootstrap_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricReport:
    """All metrics for a single-label (integer targets) or multi-label (multi-hot) task.

    Single-label: top-1, top-5 (more than five classes), balanced accuracy (mean recall of the classes in
    the test set), macro-F1 over all classes, mean one-vs-rest
    ROC-AUC; per class: F1 and ROC-AUC. Multi-label: mean ROC-AUC and mAP; per class: ROC-AUC and AP.
    """
    scores, targets = as_numpy(scores).astype(np.float64), as_numpy(targets)
    num_classes = scores.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} score columns")
    multilabel = targets.ndim == 2
    functions = _metric_functions(multilabel, num_classes)
    present = np.unique(targets).size if not multilabel else int((targets.sum(0) > 0).sum())
    if not multilabel and present < 2:
        only = names[int(targets[0])] if targets.size else "none"
        log.warning("the test set holds a single class (%s): top-1 says nothing about telling classes apart; "
                    "macro-F1 and ROC-AUC are undefined and not reported", only)
        functions = {k: v for k, v in functions.items() if k not in ("balanced_accuracy", "macro_f1", "mean_roc_auc")}
    summary = {name: fn(scores, targets) for name, fn in functions.items()}
    undefined = sorted(name for name, value in summary.items() if np.isnan(value))
    if undefined:
        log.warning("undefined on this test set and not reported: %s", ", ".join(undefined))
        functions = {k: v for k, v in functions.items() if k not in undefined}
    report = MetricReport(summary={name: summary[name] for name in functions})
    if bootstrap_resamples > 0:
        for name, fn in functions.items():
            report.intervals[name] = bootstrap_ci(fn, [scores, targets], bootstrap_resamples, confidence, seed)

    per_class: dict[str, np.ndarray] = {"roc_auc": per_class_roc_auc(scores, targets)}
    if multilabel:
        per_class["average_precision"] = per_class_average_precision(scores, targets)
    else:
        f1 = per_class_f1(np.argmax(scores, axis=1), targets, classes=range(num_classes))
        per_class["f1"] = np.array([f1[c] for c in range(num_classes)])
    for metric_name, values in per_class.items():
        report.per_class[metric_name] = {names[c]: float(v) for c, v in enumerate(values) if not np.isnan(v)}
        skipped = [names[c] for c, v in enumerate(values) if np.isnan(v)]
        if skipped:
            report.skipped_classes[metric_name] = skipped
            log.warning("%s: skipped classes %s (only one target value in the test set)", metric_name, skipped)
    return report


def bootstrap_count(setting: Any, n_test: int) -> int:
    """Resamples for a ``bootstrap_resamples`` setting: ``"auto"`` is 1000 up to
    :data:`AUTO_BOOTSTRAP_MAX_TEST` test samples and 0 above; a number is taken as is."""
    if setting == "auto":
        return 1000 if n_test <= AUTO_BOOTSTRAP_MAX_TEST else 0
    return int(setting or 0)


def class_count(class_names: Sequence[str] | None, *labels: ArrayLike) -> int:
    """Number of classes: the names given, else the width of multi-hot labels, else the largest id + 1."""
    if class_names is not None:
        return len(class_names)
    arrays = [as_numpy(l) for l in labels]
    if arrays[0].ndim == 2:
        return arrays[0].shape[1]
    return int(max(int(a.max()) for a in arrays if a.size)) + 1


def score_result(scores: ArrayLike, labels: ArrayLike, context: ProtocolContext, n_train: int,
                 details: dict[str, Any] | None = None) -> ProtocolResult:
    """A protocol's result from its test scores: :func:`classification_report` with the bootstrap and
    confidence settings of ``context`` and its seed."""
    labels = as_numpy(labels)
    settings = context.settings
    report = classification_report(
        scores, labels, context.class_names, bootstrap_count(settings.get("bootstrap_resamples", 0), len(labels)),
        float(settings.get("confidence", 0.95)), context.seed,
    )
    return ProtocolResult(summary=report.summary, per_class=report.per_class, intervals=report.intervals,
                          n_train=n_train, n_test=len(labels), details=dict(details or {}))
