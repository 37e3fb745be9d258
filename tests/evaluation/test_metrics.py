import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

from mae_domains.evaluation import metrics
from mae_domains.evaluation.metrics import (
    accuracy, average_precision_per_resample, bootstrap_ci, bootstrap_intervals, classification_report, macro_f1,
    mean_average_precision, mean_roc_auc, per_class_average_precision, per_class_roc_auc, roc_auc_per_resample,
    top_k_accuracy, top_k_per_resample,
)


@pytest.fixture
def single_label():
    rng = np.random.default_rng(42)
    scores = rng.random((60, 7))
    scores[:, 3] += 0.3
    scores /= scores.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 7, 60)
    return scores, labels


@pytest.fixture
def multi_label():
    rng = np.random.default_rng(7)
    targets = (rng.random((80, 5)) > 0.65).astype(np.float32)
    scores = 0.6 * targets + rng.random((80, 5))
    scores = np.round(scores, 1)  # many ties: checks tie handling
    return scores, targets


def test_accuracy_and_f1_match_sklearn(single_label):
    scores, labels = single_label
    predictions = scores.argmax(axis=1)
    assert accuracy(predictions, labels) == pytest.approx(accuracy_score(labels, predictions))
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(accuracy_score(labels, predictions))
    assert macro_f1(predictions, labels) == pytest.approx(f1_score(labels, predictions, average="macro"))
    assert macro_f1(predictions, labels, classes=range(7)) == pytest.approx(
        f1_score(labels, predictions, average="macro", labels=list(range(7)), zero_division=0))


def test_roc_auc_matches_sklearn(single_label, multi_label):
    scores, labels = single_label
    assert mean_roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores, multi_class="ovr", average="macro"))
    scores, targets = multi_label
    expected = [roc_auc_score(targets[:, c], scores[:, c]) for c in range(5)]
    np.testing.assert_allclose(per_class_roc_auc(scores, targets), expected)
    assert mean_roc_auc(scores, targets) == pytest.approx(roc_auc_score(targets, scores, average="macro"))


def test_average_precision_matches_sklearn_with_ties(multi_label):
    scores, targets = multi_label
    np.testing.assert_allclose(per_class_average_precision(scores, targets),
                               [average_precision_score(targets[:, c], scores[:, c]) for c in range(5)])
    assert mean_average_precision(scores, targets) == pytest.approx(average_precision_score(targets, scores, average="macro"))


def test_top5_hand_computed():
    scores = np.array([
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],  # label 4 is 5th -> hit
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],  # label 5 is 6th -> miss
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # label 6 is 1st -> hit
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # label 0 is last -> miss
    ])
    labels = np.array([4, 5, 6, 0])
    assert top_k_accuracy(scores, labels, 5) == 0.5
    assert top_k_accuracy(scores, labels, 1) == 0.25
    assert top_k_accuracy(scores, labels, 7) == 1.0


def test_hand_computed_auc_and_ap():
    # Positives at scores 0.8 and 0.4, negatives 0.6 and 0.2: 3 of 4 pairs ordered -> AUC 0.75.
    # Column 2, positives 0.5 and 0.9 against negatives 0.5 and 0.1: the tie counts 1/2 -> 3.5 / 4.
    scores = np.array([[0.8, 0.5], [0.6, 0.5], [0.4, 0.1], [0.2, 0.9]])
    targets = np.array([[1, 1], [0, 0], [1, 0], [0, 1]])
    assert per_class_roc_auc(scores, targets).tolist() == [0.75, 0.875]
    assert per_class_roc_auc(scores[:3, 1:], targets[:3, 1:]).tolist() == [0.75]  # (1/2 + 1) / 2
    assert mean_roc_auc(scores, targets) == pytest.approx((0.75 + 0.875) / 2)
    # AP: recall 0.5 at precision 1, recall 1 at precision 2/3.
    # Column 2: 0.9 (hit) -> P 1 at R 0.5; the tie at 0.5 is one threshold: 2 hits of 3 -> P 2/3 at R 1.
    ap = per_class_average_precision(scores, targets)
    np.testing.assert_allclose(ap, [0.5 * 1 + 0.5 * 2 / 3, 0.5 * 1 + 0.5 * 2 / 3])
    assert mean_average_precision(scores, targets) == pytest.approx(0.5 + 1 / 3)
    # Integer labels are one-vs-rest columns: class 0 (0.8, 0.6 over 0.4, 0.2) and class 1 (0.1, 0.9 against
    # 0.5, 0.5: two of four pairs ordered).
    assert per_class_roc_auc(scores, np.array([0, 0, 1, 1])).tolist() == [1.0, 0.5]


def test_hand_computed_f1_and_balanced_accuracy():
    predictions, labels = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2])
    # F1 = 2TP / (2TP + FP + FN): class 0 2/3, class 1 2/3, class 2 1, class 3 never seen -> 0.
    assert macro_f1(predictions, labels) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert macro_f1(predictions, labels, classes=range(4)) == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
    from mae_domains.evaluation.metrics import balanced_accuracy
    # Recall: class 0 1/1, class 1 1/2, class 2 1/1; class 3 predicted only is not a class of the labels.
    assert balanced_accuracy(predictions, labels) == pytest.approx((1 + 0.5 + 1) / 3)
    assert balanced_accuracy(np.array([3, 0, 1, 2]), labels) == pytest.approx((0 + 0.5 + 1) / 3)


def test_a_stack_of_resamples_scores_each_resample_alone(multi_label):
    # Every resample's class is its own column in one scikit-learn call: no column may see another's rows,
    # and a class absent from one resample is NaN there only.
    scores, targets = multi_label
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 80, (6, 80))
    rows[2] = np.nonzero(targets[:, 4] == 0)[0][rng.integers(0, 10, 80)]  # resample 2: class 4 has no positive
    stacked_auc = roc_auc_per_resample(scores[rows], targets[rows])
    stacked_ap = average_precision_per_resample(scores[rows], targets[rows])
    for r in range(6):
        np.testing.assert_array_equal(stacked_auc[r], per_class_roc_auc(scores[rows[r]], targets[rows[r]]))
        np.testing.assert_array_equal(stacked_ap[r], per_class_average_precision(scores[rows[r]], targets[rows[r]]))
    assert np.isnan(stacked_auc[2, 4]) and np.isnan(stacked_ap[2, 4]) and np.isfinite(stacked_auc[[0, 1, 3, 4, 5]]).all()
    # One resample alone is the binary problem of each class, as scikit-learn scores it.
    assert stacked_auc[0, 1] == roc_auc_score(targets[rows[0], 1], scores[rows[0], 1])


def test_bootstrap_intervals_do_not_depend_on_the_stack_size(single_label, monkeypatch):
    scores, labels = single_label
    functions = metrics.summary_metric_functions(False, 7)
    whole = bootstrap_intervals(functions, [scores, labels], n_resamples=40, seed=1)
    monkeypatch.setattr(metrics, "RESAMPLES_PER_STACK", 3)
    assert bootstrap_intervals(functions, [scores, labels], n_resamples=40, seed=1) == whole


def test_classes_with_one_label_value_are_skipped(caplog):
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    targets = np.array([[1, 0], [0, 0], [1, 0]], dtype=np.float32)  # class 1 has no positive sample
    assert math.isnan(per_class_roc_auc(scores[:, 1:], targets[:, 1:])[0])
    with caplog.at_level("WARNING"):
        value = mean_roc_auc(scores, targets)
    assert value == pytest.approx(roc_auc_score(targets[:, 0], scores[:, 0]))
    assert "skipped classes [1]" in caplog.text
    report = classification_report(scores, targets, class_names=["cat", "dog"])
    assert report.skipped_classes["roc_auc"] == ["dog"]
    assert set(report.per_class["roc_auc"]) == {"cat"}


def test_bootstrap_ci_is_seeded_and_brackets_the_value(single_label):
    scores, labels = single_label
    stacked = lambda s, t: top_k_per_resample(s, t, 1)  # noqa: E731
    metric = lambda s, t: top_k_accuracy(s, t, 1)  # noqa: E731
    first = bootstrap_ci(stacked, [scores, labels], n_resamples=300, seed=3)
    assert first == bootstrap_ci(stacked, [scores, labels], n_resamples=300, seed=3)
    assert first != bootstrap_ci(stacked, [scores, labels], n_resamples=300, seed=4)
    value = metric(scores, labels)
    assert first[0] <= value <= first[1]
    # Percentile interval by hand with the same resamples.
    rng = np.random.default_rng(3)
    values = [metric(scores[r], labels[r]) for r in (rng.integers(0, 60, 60) for _ in range(300))]
    assert first == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))


def test_balanced_accuracy_weighs_every_class_equally():
    from mae_domains.evaluation.metrics import balanced_accuracy
    labels = np.array([0] * 9 + [1])
    assert balanced_accuracy(np.zeros(10, int), labels) == pytest.approx(0.5)  # the majority guess
    assert balanced_accuracy(labels, labels) == 1.0


def test_classification_report_single_label(single_label):
    scores, labels = single_label
    report = classification_report(scores, labels, bootstrap_resamples=50)
    assert set(report.summary) == {"top1", "top5", "balanced_accuracy", "macro_f1", "mean_roc_auc"}
    assert set(report.intervals) == set(report.summary)
    assert report.summary["macro_f1"] == pytest.approx(
        f1_score(labels, scores.argmax(1), average="macro", labels=list(range(7)), zero_division=0))
    assert report.summary["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, scores.argmax(1)))
    assert set(report.per_class) == {"roc_auc", "f1"}
    few = classification_report(scores[:, :3], np.minimum(labels, 2))
    assert "top5" not in few.summary


def test_a_single_class_test_set_warns_and_reports_no_undefined_metric(caplog):
    from mae_domains.evaluation.metrics import classification_report

    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    with caplog.at_level("WARNING"):
        report = classification_report(scores, np.array([0, 0, 0]), ["cat", "dog"])
    assert "single class (cat)" in caplog.text
    assert set(report.summary) == {"top1"} and report.summary["top1"] == pytest.approx(2 / 3)
    assert not any(math.isnan(v) for v in report.summary.values())


def test_a_grouped_bootstrap_draws_whole_groups():
    groups = np.repeat(np.arange(12), np.arange(1, 13))  # 12 groups of 1 to 12 rows
    sizes = np.bincount(groups)
    seen = []

    def whole_groups(group_rows: np.ndarray) -> np.ndarray:
        counts = np.bincount(group_rows[0], minlength=12)
        seen.append(len(group_rows[0]))
        return np.array([float(np.all(counts % sizes == 0) and counts.sum() == len(group_rows[0]))])

    assert bootstrap_ci(whole_groups, [groups], n_resamples=200, seed=0, groups=groups) == (1.0, 1.0)
    assert len(seen) == 200 and len(set(seen)) > 20  # resample sizes vary with the groups drawn
    assert bootstrap_ci(whole_groups, [groups], 200, 0.95, 5, groups) == bootstrap_ci(
        whole_groups, [groups], 200, 0.95, 5, groups)  # seeded


def test_a_grouped_bootstrap_of_copied_samples_is_as_wide_as_a_bootstrap_of_the_originals():
    # 80 independent samples, each copied 8 times (crops of one slice that all look alike). Resampling the
    # copies one by one pretends there are 640 samples: the interval shrinks about sqrt(8)-fold. Resampling
    # the groups of copies gives the width the 80 originals have.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    scores = rng.random((80, 2)) + 0.4 * np.eye(2)[labels]
    copies = np.repeat(np.arange(80), 8)
    balanced = metrics.summary_metric_functions(False, 2)["balanced_accuracy"]
    width = lambda interval: interval[1] - interval[0]  # noqa: E731
    original = width(bootstrap_ci(balanced, [scores, labels], 2000, seed=1))
    per_copy = width(bootstrap_ci(balanced, [scores[copies], labels[copies]], 2000, seed=1))
    grouped = width(bootstrap_ci(balanced, [scores[copies], labels[copies]], 2000, seed=1, groups=copies))
    assert per_copy < 0.5 * original
    assert grouped == pytest.approx(original, rel=0.15)


@pytest.mark.parametrize("groups, message", [(np.zeros(5), "at least 2 groups"), (np.arange(4), r"shape \(5,\)")])
def test_grouped_bootstrap_refuses_one_group_or_a_wrong_length(groups, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(lambda x: x.mean(axis=-1), [np.arange(5.0)], 10, groups=groups)
