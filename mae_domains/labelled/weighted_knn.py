"""Weighted k-nearest-neighbour classification on frozen features (DINO / Scale-MAE protocol): the math,
shared by the ``knn`` evaluation protocol (:mod:`mae_domains.evaluation.knn`) and the engine's online kNN.

Features are L2-normalized; each test sample takes its ``k`` most cosine-similar training samples and
weights them by ``exp(sim / T)``. A class score is the weighted share of neighbours with that label
(multi-label: the weighted mean of their multi-hot vectors). The shares are DINO's weighted votes divided
by their sum, so the ranking is the same and the scores can feed ROC-AUC and mAP directly.

Similarities are computed chunk by chunk over both the test and the train set, keeping a running top-k,
so memory stays at ``test_chunk x train_chunk`` whatever the archive size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mae_domains.device import select_device

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07


def as_tensor(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))


def prepare_labels(labels: np.ndarray | torch.Tensor, num_classes: int | None, device) -> tuple[torch.Tensor, bool, int]:
    """Labels on ``device``: ``(N,)`` class ids (long) or ``(N, K)`` multi-hot (float), whether they are
    multi-label, and the class count (``num_classes`` or inferred)."""
    labels = as_tensor(labels).to(device)
    if labels.ndim == 2:
        return labels.float(), True, labels.shape[1]
    labels = labels.long()
    return labels, False, num_classes or int(labels.max().item()) + 1


def nearest_neighbours(
    train_features: torch.Tensor,
    query_features: torch.Tensor,
    k: int,
    train_chunk: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine similarities and train indices for each query ``(Q, k)``, chunked over the train set.

    Both inputs must already be L2-normalized and on the same device.
    """
    k = min(k, train_features.shape[0])
    best_sims = query_features.new_empty((query_features.shape[0], 0))
    best_ids = torch.empty((query_features.shape[0], 0), dtype=torch.long, device=query_features.device)
    for start in range(0, train_features.shape[0], train_chunk):
        sims = query_features @ train_features[start : start + train_chunk].T
        chunk_sims, chunk_ids = sims.topk(min(k, sims.shape[1]), dim=1)
        merged_sims = torch.cat([best_sims, chunk_sims], dim=1)
        merged_ids = torch.cat([best_ids, chunk_ids + start], dim=1)
        best_sims, order = merged_sims.topk(min(k, merged_sims.shape[1]), dim=1)
        best_ids = merged_ids.gather(1, order)
    return best_sims, best_ids


@torch.no_grad()
def knn_scores(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    test_chunk: int = 1024,
    train_chunk: int = 16384,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """Class scores ``(N_test, C)`` on the CPU, each row summing to one (single-label) or holding per-class
    weighted label means (multi-label, when ``train_labels`` is ``(N, K)`` multi-hot)."""
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0 (got k={k}, temperature={temperature})")
    device = select_device(device) if isinstance(device, str) else device
    train = F.normalize(as_tensor(train_features).float().to(device), dim=1)
    test = F.normalize(as_tensor(test_features).float().to(device), dim=1)
    labels, multilabel, num_classes = prepare_labels(train_labels, num_classes, device)
    if train.shape[0] != labels.shape[0]:
        raise ValueError(f"{train.shape[0]} train features but {labels.shape[0]} labels")
    out = []
    for start in range(0, test.shape[0], test_chunk):
        sims, ids = nearest_neighbours(train, test[start : start + test_chunk], k, train_chunk)
        # Subtract the row maximum before exp: same weights up to a factor, no overflow for small T.
        weights = torch.exp((sims - sims[:, :1]) / temperature)
        weights = weights / weights.sum(dim=1, keepdim=True)
        if multilabel:
            scores = torch.einsum("qk,qkc->qc", weights, labels[ids])
        else:
            scores = torch.zeros(ids.shape[0], num_classes, device=device).scatter_add_(1, labels[ids], weights)
        out.append(scores.cpu())
    return torch.cat(out)


def knn_predict(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    num_classes: int | None = None,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """Predicted labels ``(N_test,)`` of the single-label weighted kNN."""
    return knn_scores(train_features, train_labels, test_features, k, temperature, num_classes, device=device).argmax(dim=1)


def knn_accuracy(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    device: str | torch.device = "auto",
) -> float:
    """Top-1 accuracy of the weighted kNN classifier (single-label)."""
    test_labels = as_tensor(test_labels).long().cpu()
    num_classes = int(max(as_tensor(train_labels).max().item(), test_labels.max().item())) + 1
    predictions = knn_predict(train_features, train_labels, test_features, k, temperature, num_classes, device)
    return float((predictions == test_labels).float().mean().item())
