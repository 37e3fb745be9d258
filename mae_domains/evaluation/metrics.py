"""Classification metrics on plain arrays: top-k accuracy, macro-F1, balanced accuracy, ROC-AUC, mAP, and
their bootstrap intervals.

Scores are ``(N, C)`` arrays (higher = more likely). Single-label targets are integer labels ``(N,)``;
multi-label targets are multi-hot ``(N, C)``. F1, recall, ROC-AUC and average precision are
scikit-learn's. Every summary metric also takes a stack of bootstrap resamples (a leading resample axis)
and scores them in one scikit-learn call: each resample's class becomes one column of a multi-label
indicator matrix, so input checks run once per stack instead of once per resample. A class that has one
target value only in a set (or resample) is skipped and reported, never silently counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import average_precision_score, f1_score, recall_score, roc_auc_score

from mae_domains.protocols import ProtocolContext, ProtocolResult

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor | Sequence
# f(arrays with a leading resample axis) -> one value per resample
StackedMetric = Callable[..., np.ndarray]
AUTO_BOOTSTRAP_MAX_TEST = 5000  # "auto" bootstraps test sets up to this size (1000 resamples)
# Resamples scored per scikit-learn call: fastest measured (benchmarks/bench_metrics_bootstrap.py); wider
# stacks make each of its per-column calls slower. At most STACK_VALUES array values (16 MB of float64).
RESAMPLES_PER_STACK = 10
STACK_VALUES = 2_000_000
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


def one_hot(labels: ArrayLike, num_classes: int) -> np.ndarray:
    labels = as_numpy(labels).astype(np.int64)
    out = np.zeros((labels.size, num_classes), dtype=np.float32)
    out[np.arange(labels.size), labels] = 1.0
    return out


def indicator(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(..., N)`` integer labels -> ``(..., N, K)`` 0/1 columns, one per entry of ``classes``."""
    return (labels[..., None] == classes).astype(np.int8)


def stack_columns(values: np.ndarray) -> np.ndarray:
    """``(R, N, K)`` -> ``(N, R * K)``: column ``r * K + k`` is class ``k`` of resample ``r``."""
    return np.moveaxis(values, 0, 1).reshape(values.shape[1], -1)


def column_scores(metric: Callable[..., Any], truth: np.ndarray, other: np.ndarray, **kwargs: Any) -> np.ndarray:
    """A scikit-learn metric of every column of a ``(N, M)`` 0/1 matrix, in one call (multi-label
    indicator with ``average=None``; one column is scored as the binary problem it is)."""
    if truth.shape[1] == 1:
        return np.atleast_1d(metric(truth[:, 0], other[:, 0], **kwargs)).astype(np.float64)
    return np.asarray(metric(truth, other, average=None, **kwargs), dtype=np.float64)


def row_means(values: np.ndarray) -> np.ndarray:
    """Mean of each row over its defined (non-NaN) entries; NaN for a row with none."""
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return np.where(defined, values, 0.0).sum(axis=-1) / defined.sum(axis=-1)


def top_k_per_resample(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``(R,)`` top-k accuracy of scores ``(R, N, C)`` against labels ``(R, N)``."""
    k = min(k, scores.shape[-1])
    # Stable sort of the negated scores: on ties the lower class index ranks first.
    top = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    return (top == labels[..., None]).any(axis=-1).mean(axis=-1)


def f1_per_resample(predictions: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(R, K)`` F1 of each class in ``classes`` for predicted and true labels ``(R, N)``; 0 where precision
    and recall are both undefined (scikit-learn's ``f1_score`` with ``zero_division=0``)."""
    values = column_scores(f1_score, stack_columns(indicator(labels, classes)),
                           stack_columns(indicator(predictions, classes)), zero_division=0)
    return values.reshape(len(labels), len(classes))


def balanced_accuracy_per_resample(predictions: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(R,)`` mean recall over the classes present in each resample's labels (scikit-learn's definition of
    ``balanced_accuracy_score``), from one ``recall_score`` call."""
    truth = indicator(labels, classes)
    recall = column_scores(recall_score, stack_columns(truth), stack_columns(indicator(predictions, classes)),
                           zero_division=0).reshape(len(labels), len(classes))
    return row_means(np.where(truth.any(axis=1), recall, np.nan))


def ranking_per_resample(metric: Callable[..., Any], scores: np.ndarray, targets: np.ndarray,
                         needs_negatives: bool) -> np.ndarray:
    """``(R, C)`` ranking metric (ROC-AUC, average precision) per class of scores ``(R, N, C)`` against 0/1
    targets ``(R, N, C)``. NaN where it is undefined: no positive, or (``needs_negatives``) no negative."""
    truth = stack_columns(targets.astype(bool).astype(np.int8))
    positives = truth.sum(axis=0)
    defined = positives > 0
    if needs_negatives:
        defined &= positives < truth.shape[0]
    values = np.full(truth.shape[1], np.nan)
    if defined.any():
        values[defined] = column_scores(metric, truth[:, defined], stack_columns(scores)[:, defined])
    return values.reshape(targets.shape[0], targets.shape[-1])


def roc_auc_per_resample(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(R, C)`` ROC-AUC per class (scikit-learn's ``roc_auc_score``); NaN with one target value only."""
    return ranking_per_resample(roc_auc_score, scores, targets, needs_negatives=True)


def average_precision_per_resample(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(R, C)`` average precision per class (scikit-learn's ``average_precision_score``); NaN without a
    positive."""
    return ranking_per_resample(average_precision_score, scores, targets, needs_negatives=False)


def top_k_accuracy(scores: ArrayLike, labels: ArrayLike, k: int = 1) -> float:
    """Share of samples whose true label is among the ``k`` highest scores."""
    scores, labels = as_numpy(scores), as_numpy(labels).astype(np.int64)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"expected scores (N, C) and labels (N,), got {scores.shape} and {labels.shape}")
    return float(top_k_per_resample(scores[None], labels[None], k)[0])


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Share of exact matches between predicted and true labels."""
    predictions, labels = as_numpy(predictions), as_numpy(labels)
    return float((predictions == labels).mean())


def seen_classes(predictions: np.ndarray, labels: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    """``classes`` as an array, by default those seen in labels or predictions (scikit-learn's default)."""
    return np.union1d(labels, predictions) if classes is None else np.asarray(list(classes), dtype=np.int64)


def macro_f1(predictions: ArrayLike, labels: ArrayLike, classes: Sequence[int] | None = None) -> float:
    """Unweighted mean of per-class F1; by default over the classes seen in labels or predictions
    (scikit-learn's ``f1_score(average="macro", zero_division=0)``)."""
    predictions, labels = as_numpy(predictions).astype(np.int64), as_numpy(labels).astype(np.int64)
    classes = seen_classes(predictions, labels, classes)
    if classes.size == 0:
        return float("nan")
    return float(f1_per_resample(predictions[None], labels[None], classes)[0].mean())


def balanced_accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's ``balanced_accuracy_score``): each
    class counts equally however rare it is, so a majority-class guess scores 1 / number of classes."""
    predictions, labels = as_numpy(predictions).astype(np.int64), as_numpy(labels).astype(np.int64)
    classes = seen_classes(predictions, labels, None)
    if labels.size == 0:
        return float("nan")
    return float(balanced_accuracy_per_resample(predictions[None], labels[None], classes)[0])


def scores_and_targets(scores: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(N, C)`` and 0/1 targets ``(N, C)`` (integer labels become one-vs-rest columns)."""
    scores, targets = as_numpy(scores), as_numpy(targets)
    if targets.ndim == 1:
        targets = indicator(targets.astype(np.int64), np.arange(scores.shape[1]))
    if targets.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} differ in shape")
    return scores, targets


def per_class_roc_auc(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """ROC-AUC per class (one-vs-rest for integer labels); NaN where a class has one target value only."""
    scores, targets = scores_and_targets(scores, targets)
    return roc_auc_per_resample(scores[None], targets[None])[0]


def per_class_average_precision(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Average precision per class; NaN where a class has no positive sample."""
    scores, targets = scores_and_targets(scores, targets)
    return average_precision_per_resample(scores[None], targets[None])[0]


def _mean_skipping_nan(values: np.ndarray, what: str, quiet: bool) -> float:
    skipped = np.nonzero(np.isnan(values))[0]
    if skipped.size and skipped.size < values.size and not quiet:
        log.warning("%s: skipped classes %s (only one target value in this set)", what, skipped.tolist())
    return float(row_means(values))


def mean_roc_auc(scores: ArrayLike, targets: ArrayLike, quiet: bool = False) -> float:
    """Mean per-class ROC-AUC over the classes where it is defined (skipped classes are logged)."""
    return _mean_skipping_nan(per_class_roc_auc(scores, targets), "mean ROC-AUC", quiet)


def mean_average_precision(scores: ArrayLike, targets: ArrayLike, quiet: bool = False) -> float:
    """mAP: mean per-class average precision over the classes with at least one positive."""
    return _mean_skipping_nan(per_class_average_precision(scores, targets), "mAP", quiet)


def resample_stacks(n: int, n_resamples: int, seed: int, values_per_resample: int):
    """Row indices ``(R, n)`` of ``n_resamples`` bootstrap resamples (rows drawn with replacement), in stacks
    of :data:`RESAMPLES_PER_STACK` (at most :data:`STACK_VALUES` array values); the same rows for a seed
    whatever the stack size."""
    rng = np.random.default_rng(seed)
    per_stack = max(1, min(RESAMPLES_PER_STACK, STACK_VALUES // max(1, values_per_resample)))
    for start in range(0, n_resamples, per_stack):
        yield rng.integers(0, n, size=(min(per_stack, n_resamples - start), n))


def group_resamples(groups: np.ndarray, n_resamples: int, seed: int):
    """Row indices ``(1, m)`` of ``n_resamples`` cluster-bootstrap resamples, one at a time: each draws as many
    groups as there are, with replacement, and takes every row of each drawn group (``m`` varies). For rows
    that are not independent (crops of one slice, chips of one spatial block): the group is the unit that
    is resampled."""
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]
    if len(members) < 2:
        raise ValueError(f"a grouped bootstrap needs at least 2 groups, got {len(members)}")
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), size=len(members))])[None]


def percentile_interval(values: np.ndarray, n_resamples: int, confidence: float) -> tuple[float, float]:
    """Percentile interval of the resample values; NaN ones (metric undefined) are dropped, and if fewer
    than half of the resamples remain the interval is ``(nan, nan)``."""
    values = values[~np.isnan(values)]
    if values.size == 0 or values.size < n_resamples / 2:
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return (float(low), float(high))


def bootstrap_intervals(
    metrics: Mapping[str, StackedMetric],
    arrays: Sequence[ArrayLike],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric, all on the same resamples of the rows of ``arrays``;
    with ``groups`` (one label per row), whole groups are resampled (:func:`group_resamples`).

    A metric scores a stack of resamples: it takes the arrays with a leading resample axis and returns one
    value per resample (like :func:`roc_auc_per_resample` and the others here).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arrays = [as_numpy(a) for a in arrays]
    n = arrays[0].shape[0]
    if n == 0 or n_resamples <= 0:
        return {name: (float("nan"), float("nan")) for name in metrics}
    if groups is not None:
        groups = as_numpy(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must give one label per row: shape ({n},), got {groups.shape}")
    stacks = (resample_stacks(n, n_resamples, seed, sum(a.size for a in arrays)) if groups is None
              else group_resamples(groups, n_resamples, seed))
    values: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for rows in stacks:
        resampled = [a[rows] for a in arrays]
        for name, metric in metrics.items():
            values[name].append(np.asarray(metric(*resampled), dtype=np.float64))
    return {name: percentile_interval(np.concatenate(v), n_resamples, confidence) for name, v in values.items()}


def bootstrap_ci(
    metric: StackedMetric,
    arrays: Sequence[ArrayLike],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of one stacked metric (see :func:`bootstrap_intervals`)."""
    return bootstrap_intervals({"metric": metric}, arrays, n_resamples, confidence, seed, groups)["metric"]


def summary_metric_functions(multilabel: bool, num_classes: int) -> dict[str, StackedMetric]:
    """Summary metrics for a task: name -> f(scores (R, N, C), targets (R, N) or (R, N, C)) -> (R,)."""
    if multilabel:
        return {
            "mean_roc_auc": lambda s, t: row_means(roc_auc_per_resample(s, t)),
            "mAP": lambda s, t: row_means(average_precision_per_resample(s, t)),
        }
    classes = np.arange(num_classes)
    metrics: dict[str, StackedMetric] = {"top1": lambda s, t: top_k_per_resample(s, t, 1)}
    if num_classes > 5:  # top-5 is always 1 with five classes or fewer
        metrics["top5"] = lambda s, t: top_k_per_resample(s, t, 5)
    metrics["balanced_accuracy"] = lambda s, t: balanced_accuracy_per_resample(s.argmax(axis=-1), t, classes)
    metrics["macro_f1"] = lambda s, t: f1_per_resample(s.argmax(axis=-1), t, classes).mean(axis=-1)
    metrics["mean_roc_auc"] = lambda s, t: row_means(roc_auc_per_resample(s, indicator(t, classes)))
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
    groups: ArrayLike | None = None,
) -> MetricReport:
    """All metrics for a single-label (integer targets) or multi-label (multi-hot) task; with ``groups`` (one
    label per sample) the bootstrap resamples whole groups of dependent samples.

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
    if not multilabel:
        targets = targets.astype(np.int64)
    functions = summary_metric_functions(multilabel, num_classes)
    present = np.unique(targets).size if not multilabel else int((targets.sum(0) > 0).sum())
    if not multilabel and present < 2:
        only = names[int(targets[0])] if targets.size else "none"
        log.warning("the test set holds a single class (%s): top-1 says nothing about telling classes apart; "
                    "macro-F1 and ROC-AUC are undefined and not reported", only)
        functions = {k: v for k, v in functions.items() if k not in ("balanced_accuracy", "macro_f1", "mean_roc_auc")}
    summary = {name: float(fn(scores[None], targets[None])[0]) for name, fn in functions.items()}
    undefined = sorted(name for name, value in summary.items() if np.isnan(value))
    if undefined:
        log.warning("undefined on this test set and not reported: %s", ", ".join(undefined))
        functions = {k: v for k, v in functions.items() if k not in undefined}
    report = MetricReport(summary={name: summary[name] for name in functions})
    if bootstrap_resamples > 0:
        report.intervals = bootstrap_intervals(functions, [scores, targets], bootstrap_resamples, confidence, seed,
                                               groups)

    per_class: dict[str, np.ndarray] = {"roc_auc": per_class_roc_auc(scores, targets)}
    if multilabel:
        per_class["average_precision"] = per_class_average_precision(scores, targets)
    else:
        per_class["f1"] = f1_per_resample(scores.argmax(axis=1)[None], targets[None], np.arange(num_classes))[0]
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
                 details: dict[str, Any] | None = None, sample_ids: Sequence[str] | None = None) -> ProtocolResult:
    """A protocol's result from its test scores: :func:`classification_report` with the bootstrap and
    confidence settings of ``context`` and its seed. ``details["test_predictions"]`` keeps the test labels,
    scores and (when given) sample ids, in test-set order, so that two encoders can be compared on the same
    resamples, and resamples can draw whole groups of samples (slices, spatial blocks). With
    ``context.test_groups``, the intervals resample those groups."""
    labels = as_numpy(labels)
    settings = context.settings
    groups = None
    if context.test_groups is not None:
        if sample_ids is None:
            raise ValueError("bootstrap groups need the test samples' ids, and this protocol gave none")
        groups = context.test_groups(list(sample_ids))
    report = classification_report(
        scores, labels, context.class_names, bootstrap_count(settings.get("bootstrap_resamples", 0), len(labels)),
        float(settings.get("confidence", 0.95)), context.seed, groups,
    )
    predictions = {"labels": labels, "scores": as_numpy(scores).astype(np.float32)}
    if sample_ids is not None:
        if len(sample_ids) != len(labels):
            raise ValueError(f"{len(sample_ids)} sample ids for {len(labels)} test samples")
        predictions["sample_ids"] = np.asarray([str(i) for i in sample_ids], dtype=str)
    return ProtocolResult(summary=report.summary, per_class=report.per_class, intervals=report.intervals,
                          n_train=n_train, n_test=len(labels),
                          details={**(details or {}), "test_predictions": predictions})
