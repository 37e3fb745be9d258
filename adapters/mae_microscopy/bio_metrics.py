"""Cell-biology metrics on (aggregated, batch-corrected) profiles.

- **Replicate consistency**: mean average precision of replicates retrieving each other. Each replicate
  profile queries the others by cosine similarity; positives are the other replicates of its group
  (perturbation), negatives the profiles of other groups (or only the controls). AP per query, averaged
  per group, then over groups (groups with one replicate, and control groups, are not queried).
- **Recall of known relationships**: among all pairs of perturbation profiles, the share of annotated
  pairs (CORUM, hu.MAP, Reactome, SIGNOR, StringDB tables supplied by the user) whose cosine similarity is
  below the 5th or above the 95th percentile of all pairwise similarities.
- **Channel-adaptive 1-NN** (CHAMMI): macro-F1 of a 1-nearest-neighbour classifier on frozen features.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities of the rows of ``a`` with the rows of ``b`` (default ``a``)."""
    a = np.asarray(a, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    if b is None:
        return a @ a.T
    b = np.asarray(b, dtype=np.float64)
    return a @ (b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)).T


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of a ranking by descending ``scores``: the mean precision at the rank of each relevant item
    (ties broken by position, stable); 0 when nothing is relevant."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(relevant, dtype=bool)[order]
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


@dataclass
class ReplicateResult:
    """``map``: mean over groups of the mean AP of their queries; per group and per query values."""

    map: float
    per_group: dict[Hashable, float] = field(default_factory=dict)
    per_query: np.ndarray = field(default_factory=lambda: np.zeros(0))
    queried_groups: int = 0


def replicate_map(features: np.ndarray, groups: Sequence[Hashable], controls: Sequence[Hashable] = (),
                  negatives: str = "others") -> ReplicateResult:
    """Replicate consistency (see the module docstring). ``negatives``: ``others`` (every profile of another
    group) or ``controls`` (only the control profiles, as in copairs' phenotypic activity)."""
    if negatives not in ("others", "controls"):
        raise ValueError(f"negatives must be 'others' or 'controls', got {negatives!r}")
    groups = np.asarray(groups, dtype=object)
    is_control = np.isin(groups, np.asarray(list(controls), dtype=object)) if len(controls) else np.zeros(len(groups), bool)
    if negatives == "controls" and not is_control.any():
        raise ValueError("negatives='controls' needs control profiles; none of the groups is a control")
    sims = cosine_similarity_matrix(features)
    per_query = np.full(len(groups), np.nan)
    for i in range(len(groups)):
        if is_control[i]:
            continue
        same = groups == groups[i]
        same[i] = False
        if not same.any():
            continue
        candidates = same | (~(groups == groups[i]) & (is_control if negatives == "controls" else True))
        candidates[i] = False
        per_query[i] = average_precision(sims[i, candidates], same[candidates])
    per_group = {g: float(np.nanmean(per_query[groups == g])) for g in dict.fromkeys(groups.tolist())
                 if not np.isnan(per_query[groups == g]).all()}
    value = float(np.mean(list(per_group.values()))) if per_group else float("nan")
    return ReplicateResult(value, per_group, per_query, len(per_group))


@dataclass
class RecallResult:
    """Share of annotated pairs in the tails, the tail thresholds and each found pair's similarity."""

    recall: float
    lower: float
    upper: float
    pairs: list[tuple[str, str, float]] = field(default_factory=list)
    missing: int = 0


def relationship_recall(features: np.ndarray, names: Sequence[str], pairs: Sequence[tuple[str, str]],
                        lower_percentile: float = 5.0, upper_percentile: float = 95.0) -> RecallResult:
    """Recall of known relationships among perturbation profiles (one row per name). Pairs with a name not
    among ``names`` (or of a name with itself) are counted in ``missing`` and left out."""
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("relationship recall needs one profile per perturbation; aggregate first")
    index = {n: i for i, n in enumerate(names)}
    sims = cosine_similarity_matrix(features)
    upper_tri = sims[np.triu_indices(len(names), k=1)]
    if upper_tri.size == 0:
        raise ValueError("relationship recall needs at least two perturbations")
    low, high = np.percentile(upper_tri, [lower_percentile, upper_percentile])
    found, missing, hits = [], 0, 0
    for a, b in pairs:
        a, b = str(a), str(b)
        if a not in index or b not in index or a == b:
            missing += 1
            continue
        s = float(sims[index[a], index[b]])
        found.append((a, b, s))
        hits += s <= low or s >= high
    recall = hits / len(found) if found else float("nan")
    return RecallResult(recall, float(low), float(high), found, missing)


def read_relationships(path: str | Path) -> list[tuple[str, str]]:
    """Pairs from a CSV: columns ``entity_a``/``entity_b`` (or ``a``/``b``, ``gene_a``/``gene_b``), else the
    first two columns."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        for a, b in (("entity_a", "entity_b"), ("a", "b"), ("gene_a", "gene_b"), ("perturbation_a", "perturbation_b")):
            if a in header and b in header:
                ia, ib = header.index(a), header.index(b)
                break
        else:
            ia, ib = 0, 1
        pairs = [(row[ia].strip(), row[ib].strip()) for row in reader if len(row) > max(ia, ib)]
    if not pairs:
        raise ValueError(f"{path}: no relationship pairs")
    return pairs


def one_nn_predict(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Label of each test row's nearest training row (``cosine`` or ``euclidean``)."""
    train_y = np.asarray(train_y)
    if metric == "cosine":
        nearest = cosine_similarity_matrix(test_x, train_x).argmax(axis=1)
    elif metric == "euclidean":
        a, b = np.asarray(test_x, np.float64), np.asarray(train_x, np.float64)
        d = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None]
        nearest = d.argmin(axis=1)
    else:
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    return train_y[nearest]


def one_nn_macro_f1(train_x: np.ndarray, train_y: Sequence, test_x: np.ndarray, test_y: Sequence,
                    metric: str = "cosine") -> float:
    """CHAMMI's score: macro-F1 over the test classes of the 1-nearest-neighbour predictions."""
    from sklearn.metrics import f1_score

    predicted = one_nn_predict(train_x, train_y, test_x, metric)
    test_y = np.asarray(test_y)
    return float(f1_score(test_y, predicted, labels=np.unique(test_y), average="macro", zero_division=0))
