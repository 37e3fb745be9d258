"""Paired comparison of two encoders on one test set (mae_domains.evaluation.paired)."""

import numpy as np
import pytest

from mae_domains.evaluation.metrics import classification_report
from mae_domains.evaluation.paired import paired_difference


def scores_from(predictions: np.ndarray, classes: int = 2) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[predictions]


def test_identical_encoders_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    runs = [rng.random((60, 3)) for _ in range(3)]
    result = paired_difference(labels, runs, runs, resamples=200)
    for metric in ("balanced_accuracy", "macro_f1"):
        d = result[metric]
        assert (d.difference, d.low, d.high, d.wins, d.pairs, d.n_test) == (0.0, 0.0, 0.0, 0, 3, 60)
        assert d.verdict == "no difference shown"


def test_the_difference_is_of_the_seed_means_that_classification_report_gives():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    a = [rng.random((80, 2)) + 0.6 * scores_from(labels) for _ in range(3)]
    b = [rng.random((80, 2)) for _ in range(2)]
    result = paired_difference(labels, a, b, resamples=100)
    for metric in ("balanced_accuracy", "macro_f1"):
        mean_a = np.mean([classification_report(s, labels).summary[metric] for s in a])
        mean_b = np.mean([classification_report(s, labels).summary[metric] for s in b])
        assert result[metric].difference == pytest.approx(mean_a - mean_b, abs=1e-12)
        assert result[metric].pairs == 2


def test_pairing_shows_a_small_consistent_gain_that_separate_intervals_hide():
    # 200 test samples; b is right on 150, a on the same 150 and 12 more. Separately, the two 95 % intervals
    # (about +-0.06 each) overlap; paired, every resample favours a, so the difference's interval is above 0.
    labels = np.array([0, 1] * 100)
    right_b = np.zeros(200, bool)
    right_b[:150] = True
    right_a = right_b.copy()
    right_a[150:162] = True
    a = scores_from(np.where(right_a, labels, 1 - labels))
    b = scores_from(np.where(right_b, labels, 1 - labels))
    separate = [classification_report(s, labels, bootstrap_resamples=1000).intervals["balanced_accuracy"]
                for s in (a, b)]
    assert separate[0][0] < separate[1][1]  # the separate intervals overlap
    d = paired_difference(labels, [a], [b])["balanced_accuracy"]
    assert d.difference == pytest.approx(0.06)
    assert 0 < d.low < 0.06 < d.high and d.verdict == "ahead" and (d.wins, d.pairs) == (1, 1)
    assert paired_difference(labels, [b], [a])["balanced_accuracy"].verdict == "behind"


def test_the_interval_is_seeded_and_reproducible():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 50)
    a, b = [rng.random((50, 2))], [rng.random((50, 2))]
    first = paired_difference(labels, a, b, seed=3)
    assert paired_difference(labels, a, b, seed=3) == first
    assert paired_difference(labels, a, b, seed=4)["macro_f1"] != first["macro_f1"]


@pytest.mark.parametrize("labels, a, b, message", [
    (np.zeros((4, 2)), [np.zeros((4, 2))], [np.zeros((4, 2))], "single-label"),
    (np.zeros(4), [np.zeros((5, 2))], [np.zeros((4, 2))], "encoder a"),
    (np.zeros(4), [np.zeros((4, 2))], [], "no runs for encoder b"),
    (np.zeros(4), [np.zeros((4, 2))], [np.zeros((4, 3))], "class counts"),
])
def test_mismatched_inputs_are_refused(labels, a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_difference(labels, a, b)


def test_an_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        paired_difference(np.zeros(4), [np.zeros((4, 2))], [np.zeros((4, 2))], metrics=("dice",))


def test_resampling_groups_widens_the_interval_of_copied_samples():
    # Each of 100 samples copied 6 times: paired per copy, the difference looks far surer than it is.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 100)
    a = [rng.random((100, 2)) + 0.5 * scores_from(labels) for _ in range(2)]
    b = [rng.random((100, 2)) + 0.3 * scores_from(labels) for _ in range(2)]
    copies = np.repeat(np.arange(100), 6)
    original = paired_difference(labels, a, b, resamples=500)["balanced_accuracy"]
    per_copy = paired_difference(labels[copies], [s[copies] for s in a], [s[copies] for s in b],
                                 resamples=500)["balanced_accuracy"]
    grouped = paired_difference(labels[copies], [s[copies] for s in a], [s[copies] for s in b], resamples=500,
                                groups=copies)["balanced_accuracy"]
    assert grouped.difference == per_copy.difference == pytest.approx(original.difference)
    assert per_copy.high - per_copy.low < 0.6 * (original.high - original.low)
    assert grouped.high - grouped.low == pytest.approx(original.high - original.low, rel=0.2)
