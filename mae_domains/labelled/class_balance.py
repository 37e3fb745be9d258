"""Class balancing for uneven label sets: scikit-learn's ``class_weight="balanced"`` weights.

A class seen ``n_c`` times among ``n`` training labels of ``k`` classes gets weight ``n / (k * n_c)``
(:func:`sklearn.utils.class_weight.compute_class_weight`), so every class carries the same total weight.
A class absent from the training labels gets weight 0 (it has no samples to weigh). Used by the
fine-tuning loss (weighted cross-entropy) and the kNN vote (each class's share divided by its training
frequency, the Bayes correction of the class prior).
"""

from __future__ import annotations

import numpy as np
import torch

CLASS_WEIGHTS = ("none", "balanced")


def check_class_weight(value: str) -> str:
    value = "none" if value is None else str(value).lower()
    if value not in CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, got {value!r}")
    return value


def balanced_class_weights(labels: np.ndarray | torch.Tensor | list, num_classes: int) -> torch.Tensor:
    """``(num_classes,)`` float32 weights ``n / (k * n_c)`` over the classes present (0 for absent ones), ``k``
    the number of classes present; single-label integer labels only."""
    from sklearn.utils.class_weight import compute_class_weight

    values = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if values.ndim != 1:
        raise ValueError("class_weight=balanced needs single-label integer labels (multi-hot labels: use none)")
    values = values.astype(np.int64)
    present = np.unique(values)
    weights = np.zeros(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=values)
    return torch.from_numpy(weights)
