"""``anomaly``: reconstruction-error anomaly scoring for any adapter, reported as AUROC.

Each test image's score is its MAE reconstruction error averaged over ``masks`` seeded random masks:
for one mask, the squared error between the decoder's predictions and the target (in the model's target
space, per-patch normalized when the run used ``norm_pix_loss``) averaged over the valid target values of
every decoded token. The inputs come from the adapter's ``model_inputs`` (so ultrasound's blurred input /
sharp target pairing holds). Mask ``k`` uses the seed ``derive_seed(seed, k, STREAM_MASK)`` for every
image, so a score depends on the image alone, never on which images share its batch. The ratio is the
run's mask ratio unless ``mask_ratio`` is set.

The interval is left out, with a warning, when either group has fewer than
:data:`MIN_PER_CLASS_FOR_INTERVAL` images: a bootstrap of 2 + 2 images gives [1.0, 1.0] for a perfect
split, a false certainty.

Labels: the test split's classes must be ``normal`` and ``abnormal`` (a CSV ``path,label`` or folders
``normal/`` and ``abnormal/``); ``abnormal`` is the positive class. Summary: ``auroc`` (with a bootstrap
interval) and the mean score of each group; ``details["per_image"]`` lists every image's sample id, source
file, label and score (the runner writes it to ``per_image/anomaly__<checkpoint>__<dataset>__seed<k>.csv``).
It needs the whole model with its decoder: a run folder or ``checkpoint.pt``, not an encoder-only export.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from mae_domains.data.seeding import STREAM_MASK, derive_seed
from mae_domains.device import select_device
from mae_domains.evaluation.metrics import bootstrap_ci, bootstrap_count, per_class_roc_auc, roc_auc_per_resample
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult

ModelInputsFn = Callable[[Mapping[str, Any], torch.device], dict[str, Any]]
NORMAL, ABNORMAL = "normal", "abnormal"
MIN_PER_CLASS_FOR_INTERVAL = 10  # images of each group below which no bootstrap interval is reported

log = logging.getLogger(__name__)


def mask_seed(seed: int, mask_index: int) -> int:
    """The mask seed of mask ``mask_index`` (the same for every image)."""
    return derive_seed(seed, mask_index, STREAM_MASK)


def reconstruction_error(output: Any) -> torch.Tensor:
    """``(B,)`` mean squared error over the valid target values of every decoded token of a model output
    (anything with ``pred``, ``target`` and ``weight`` of shape ``(B, Q, P)``)."""
    weight = output.weight.float()
    err = (output.pred.float() - output.target.float()) ** 2 * weight
    return err.sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp_min(1.0)


def default_model_inputs(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {"images": batch["image"].to(device), "mask_seeds": batch["mask_seed"]}


@torch.no_grad()
def anomaly_scores(model: nn.Module, loader: Iterable[Mapping[str, Any]], model_inputs: ModelInputsFn | None = None,
                   masks: int = 8, seed: int = 0, mask_ratio: float | None = None,
                   device: str | torch.device = "auto") -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(scores (N,), labels (N,), sample_ids, sources)`` over ``loader``: each image's reconstruction error
    averaged over ``masks`` seeded masks (module docstring)."""
    if masks < 1:
        raise ValueError(f"masks must be at least 1, got {masks}")
    if not hasattr(model, "decoder"):
        raise ValueError(f"anomaly scoring needs the whole MAE with its decoder; {type(model).__name__} has none")
    device = select_device(device) if isinstance(device, str) else device
    model_inputs = model_inputs or default_model_inputs
    was_training = model.training
    model.to(device).eval()
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    ids: list[str] = []
    sources: list[str] = []
    try:
        for batch in loader:
            if "image" not in batch:  # every sample of this batch was bad
                continue
            size = len(batch["image"])
            total = torch.zeros(size, dtype=torch.float64)
            for k in range(masks):
                masked = {**batch, "mask_seed": torch.full((size,), mask_seed(seed, k), dtype=torch.int64)}
                extra = {} if mask_ratio is None else {"mask_ratio": float(mask_ratio)}
                output = model(**model_inputs(masked, device), **extra)
                total += reconstruction_error(output).double().cpu()
            scores.append((total / masks).numpy())
            labels.append(np.asarray(batch["label"]) if "label" in batch else np.full(size, -1))
            batch_ids = [str(s) for s in batch.get("sample_id", [str(len(ids) + i) for i in range(size)])]
            metas = batch.get("meta") or [{}] * size
            sources += [str(m.get("source", sid)) if isinstance(m, Mapping) else sid for m, sid in zip(metas, batch_ids)]
            ids += batch_ids
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError("anomaly scoring: the test split holds no readable image")
    return np.concatenate(scores), np.concatenate(labels), ids, sources


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive`` (NaN without both groups)."""
    return float(per_class_roc_auc(np.asarray(scores)[:, None], np.asarray(positive, bool)[:, None])[0])


def auroc_per_resample(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """``(R,)`` AUROC of stacked resamples ``(R, N)`` (for :func:`bootstrap_ci`)."""
    return roc_auc_per_resample(scores[..., None], positive[..., None])[:, 0]


def abnormal_flags(labels: np.ndarray, class_names: list[str] | None) -> np.ndarray:
    """Boolean ``abnormal`` per image from integer labels over the class names ``normal`` / ``abnormal``."""
    names = [str(n).lower() for n in (class_names or [])]
    if labels.ndim != 1 or not names or set(names) - {NORMAL, ABNORMAL}:
        raise ValueError(f"anomaly scoring needs labels 'normal' and 'abnormal' (a CSV path,label or folders "
                         f"normal/ and abnormal/); got classes {list(class_names or [])}")
    if ABNORMAL not in names:
        return np.zeros(len(labels), bool)
    return labels.astype(int) == names.index(ABNORMAL)


class AnomalyProtocol(EvaluationProtocol):
    """Per-image MAE reconstruction error over seeded masks, scored by AUROC against normal / abnormal."""

    name = "anomaly"
    description = "reconstruction-error anomaly scoring (AUROC, normal vs abnormal)"
    needs_train = False

    def defaults(self) -> dict[str, Any]:
        return {"masks": 8, "mask_ratio": None}

    def run(self, context: ProtocolContext) -> ProtocolResult:
        if context.model is None or not hasattr(context.model, "decoder"):
            raise ValueError("anomaly scoring needs the whole MAE with its decoder: give a run folder or its "
                             "checkpoint.pt, not an encoder-only export")
        settings = context.settings
        ratio = settings.get("mask_ratio")
        scores, labels, ids, sources = anomaly_scores(context.model, context.test, context.model_inputs,
                                             int(settings["masks"]), context.seed,
                                             None if ratio is None else float(ratio), context.device)
        flags = abnormal_flags(labels, list(context.class_names or []))
        if flags.all() or not flags.any():
            raise ValueError(f"anomaly scoring needs normal and abnormal test images; got {int(flags.sum())} "
                             f"abnormal of {len(flags)}")
        value = auroc(scores, flags)
        summary = {"auroc": value, "mean_score_normal": float(scores[~flags].mean()),
                   "mean_score_abnormal": float(scores[flags].mean())}
        intervals: dict[str, tuple[float, float]] = {}
        resamples = bootstrap_count(settings.get("bootstrap_resamples", 0), len(scores))
        smallest = int(min(flags.sum(), (~flags).sum()))
        if resamples and smallest < MIN_PER_CLASS_FOR_INTERVAL:
            log.warning("anomaly: %d normal and %d abnormal test images, fewer than %d per class: no bootstrap "
                        "interval for the AUROC (resampling so few images gives a meaningless one)",
                        int((~flags).sum()), int(flags.sum()), MIN_PER_CLASS_FOR_INTERVAL)
        elif resamples and not math.isnan(value):
            intervals["auroc"] = bootstrap_ci(auroc_per_resample, [scores, flags], resamples,
                                              float(settings.get("confidence", 0.95)), context.seed)
        per_image = [{"sample_id": sid, "source": src, "label": ABNORMAL if f else NORMAL, "score": float(s)}
                     for sid, src, s, f in zip(ids, sources, scores, flags)]
        return ProtocolResult(summary=summary, intervals=intervals, n_train=0, n_test=len(scores),
                              details={"per_image": per_image})
