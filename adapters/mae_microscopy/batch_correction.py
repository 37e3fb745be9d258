"""Batch correction of well profiles (Kraus et al.; "typical variation normalization", Ando et al.).

1. **PCA on controls**: a PCA fitted on the control wells only, applied to every well (whitening optional);
2. **centre and scale per batch** (plate): subtract the mean and divide by the std of that batch's controls;
3. **CORAL** (optional, TVN): per batch, whiten with the inverse square root of its controls' covariance
   (regularized by ``eps``), optionally re-colouring with the pooled control covariance.

All functions take ``features`` ``(N, D)``, ``batches`` (one id per row) and ``is_control`` (bool per row)
and return float64 arrays; a batch without controls is an error that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def _batch_rows(batches: Sequence, is_control: np.ndarray) -> list[tuple[object, np.ndarray, np.ndarray]]:
    """``(batch id, row mask, control mask)`` per batch, in first-seen order."""
    batches = np.asarray(batches)
    out = []
    for batch in dict.fromkeys(batches.tolist()):
        rows = batches == batch
        controls = rows & is_control
        if not controls.any():
            raise ValueError(f"batch {batch!r} has no control wells; batch correction needs controls on every plate")
        out.append((batch, rows, controls))
    return out


def pca_on_controls(features: np.ndarray, is_control: np.ndarray, n_components: int | float | None = None,
                    whiten: bool = False, seed: int = 0) -> tuple[np.ndarray, Any]:
    """Every row projected on a PCA fitted to the control rows (``n_components``: a count, a share of
    variance in (0, 1), or None = as many as the controls allow)."""
    from sklearn.decomposition import PCA

    features = np.asarray(features, dtype=np.float64)
    is_control = np.asarray(is_control, dtype=bool)
    controls = features[is_control]
    if len(controls) < 2:
        raise ValueError(f"PCA on controls needs at least 2 control rows, got {len(controls)}")
    if n_components is None:
        n_components = min(controls.shape)
    pca = PCA(n_components=n_components, whiten=whiten, svd_solver="full", random_state=seed).fit(controls)
    return pca.transform(features), pca


def center_scale_by_batch(features: np.ndarray, batches: Sequence, is_control: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per batch: ``(x - mean(controls)) / std(controls)`` (population std, at least ``eps``)."""
    features = np.asarray(features, dtype=np.float64)
    out = np.empty_like(features)
    for _, rows, controls in _batch_rows(batches, np.asarray(is_control, bool)):
        mean = features[controls].mean(axis=0)
        std = np.maximum(features[controls].std(axis=0), eps)
        out[rows] = (features[rows] - mean) / std
    return out


def sym_power(matrix: np.ndarray, power: float) -> np.ndarray:
    """``matrix ** power`` of a symmetric positive definite matrix (eigen decomposition)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    values = np.maximum(values, 1e-12)
    return (vectors * values**power) @ vectors.T


def coral_align(features: np.ndarray, batches: Sequence, is_control: np.ndarray, eps: float = 1e-3,
                recolor: bool = False) -> np.ndarray:
    """CORAL per batch: ``(x - mean_b) @ (C_b + eps I)^(-1/2)`` with ``C_b`` the covariance of batch b's
    controls; with ``recolor`` then ``@ (C + eps I)^(1/2)``, ``C`` the pooled control covariance (so the
    batches share the controls' typical variation instead of the identity)."""
    features = np.asarray(features, dtype=np.float64)
    is_control = np.asarray(is_control, bool)
    d = features.shape[1]
    eye = np.eye(d)
    target = sym_power(np.cov(features[is_control], rowvar=False, bias=True).reshape(d, d) + eps * eye, 0.5) if recolor else eye
    out = np.empty_like(features)
    for _, rows, controls in _batch_rows(batches, is_control):
        mean = features[controls].mean(axis=0)
        cov = np.cov(features[controls], rowvar=False, bias=True).reshape(d, d) if controls.sum() > 1 else np.zeros((d, d))
        out[rows] = (features[rows] - mean) @ sym_power(cov + eps * eye, -0.5) @ target
    return out


@dataclass(frozen=True)
class CorrectionSettings:
    """The steps of :func:`batch_correct`."""

    pca_components: int | float | None = None  # None: keep every component the controls allow
    pca_whiten: bool = False
    center_scale: bool = True
    coral: bool = False
    coral_eps: float = 1e-3
    coral_recolor: bool = False


def batch_correct(features: np.ndarray, batches: Sequence, is_control: np.ndarray,
                  settings: CorrectionSettings = CorrectionSettings()) -> np.ndarray:
    """PCA on controls, then per-batch centring and scaling on controls, then optional CORAL (TVN)."""
    is_control = np.asarray(is_control, bool)
    out, _ = pca_on_controls(features, is_control, settings.pca_components, settings.pca_whiten)
    if settings.center_scale:
        out = center_scale_by_batch(out, batches, is_control)
    if settings.coral:
        out = coral_align(out, batches, is_control, settings.coral_eps, settings.coral_recolor)
    return out
