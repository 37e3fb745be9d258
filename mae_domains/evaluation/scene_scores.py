"""Scores of a predicted class raster against a truth raster on the same grid: per-class IoU, mIoU and a
spatial-block bootstrap interval of the mIoU.

- Scored pixels: truth labelled (not the truth's nodata, not masked) and prediction valid (not
  :data:`~mae_domains.evaluation.scene_segmentation.NODATA_CLASS`); both are counted and reported.
- Confusion counts (truth class x predicted class) are kept per spatial block of ``block`` px (blocks on
  each scene's pixel grid), so rasters are read window by window, never whole.
- IoU of a class = TP / (TP + FP + FN) from the pooled confusion matrix; mIoU = the mean over the classes
  present in truth or prediction (the usual dataset-level definition, e.g. mmsegmentation's).
- Interval: percentile bootstrap that resamples whole blocks with replacement (neighbouring pixels are
  not independent; a pixel bootstrap would give an interval far too narrow), seeded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
from rasterio.windows import Window

NODATA_CLASS = 255  # class rasters written by ``segment``: no prediction (no valid scene pixel)
MAX_CLASS_ID = 65535
AUTO_RESAMPLES = 1000


@dataclass
class SceneScores:
    """mIoU with its interval, IoU per class id, the pooled confusion matrix and what was counted."""

    miou: float
    ci_low: float
    ci_high: float
    iou: dict[int, float]
    classes: list[int]
    confusion: np.ndarray  # (len(classes), len(classes)): rows truth, columns prediction
    scored_pixels: int
    unpredicted_pixels: int  # labelled in the truth but no valid prediction (no scene data): not scored
    blocks: int
    block: int
    resamples: int
    confidence: float
    seed: int
    names: dict[int, str] = field(default_factory=dict)

    def name(self, class_id: int) -> str:
        return self.names.get(int(class_id), f"class_{int(class_id)}")

    def iou_by_name(self) -> dict[str, float]:
        return {self.name(k): v for k, v in self.iou.items()}

    def to_dict(self) -> dict[str, Any]:
        clean = lambda v: None if not math.isfinite(v) else float(v)  # noqa: E731
        return {
            "miou": clean(self.miou), "ci_low": clean(self.ci_low), "ci_high": clean(self.ci_high),
            "confidence": self.confidence, "iou": {k: clean(v) for k, v in self.iou_by_name().items()},
            "pixels": {self.name(c): {"truth": int(self.confusion[i].sum()), "predicted": int(self.confusion[:, i].sum())}
                       for i, c in enumerate(self.classes)},
            "confusion": {"classes": [self.name(c) for c in self.classes], "rows": "truth", "columns": "prediction",
                          "counts": self.confusion.astype(int).tolist()},
            "scored_pixels": self.scored_pixels, "unpredicted_pixels": self.unpredicted_pixels,
            "bootstrap": {"unit": f"{self.block} x {self.block} px blocks", "blocks": self.blocks,
                          "resamples": self.resamples, "seed": self.seed},
        }


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU per row/column of a square confusion matrix; NaN where a class is in neither truth nor prediction."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in truth or prediction; NaN when nothing was scored."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class BlockConfusion:
    """Confusion counts per spatial block, accumulated window by window (any order, any window size)."""

    def __init__(self, block: int) -> None:
        if int(block) < 1:
            raise ValueError(f"bootstrap block must be at least 1 px, got {block}")
        self.block = int(block)
        self._blocks: dict[tuple[int, int, int], int] = {}
        self._rows: list[np.ndarray] = []  # (block index, truth, prediction, count)
        self.scored = 0
        self.unpredicted = 0

    def add(self, scene: int, row: int, col: int, truth: np.ndarray, labelled: np.ndarray, pred: np.ndarray) -> None:
        """Count a window whose top-left pixel is (``row``, ``col``) of scene number ``scene``: ``truth``
        class ids, ``labelled`` (truth usable), ``pred`` class ids (:data:`NODATA_CLASS` = no prediction)."""
        predicted = pred != NODATA_CLASS
        self.unpredicted += int((labelled & ~predicted).sum())
        rr, cc = np.nonzero(labelled & predicted)
        if rr.size == 0:
            return
        t, p = truth[rr, cc].astype(np.int64), pred[rr, cc].astype(np.int64)
        if t.min() < 0 or t.max() > MAX_CLASS_ID:
            raise ValueError(f"truth class ids must be in 0..{MAX_CLASS_ID}, found {t.min()}..{t.max()}")
        first_r, first_c = row // self.block, col // self.block
        br, bc = (row + rr) // self.block - first_r, (col + cc) // self.block - first_c
        width = int(bc.max()) + 1
        keys = ((br * width + bc) * (MAX_CLASS_ID + 1) + t) * (MAX_CLASS_ID + 1) + p
        unique, counts = np.unique(keys, return_counts=True)
        p_u = unique % (MAX_CLASS_ID + 1)
        t_u = (unique // (MAX_CLASS_ID + 1)) % (MAX_CLASS_ID + 1)
        local = unique // (MAX_CLASS_ID + 1) ** 2
        index = np.array([self._blocks.setdefault((scene, first_r + int(k // width), first_c + int(k % width)),
                                                  len(self._blocks)) for k in local], np.int64)
        self._rows.append(np.stack([index, t_u, p_u, counts]))
        self.scored += int(rr.size)

    def per_block(self) -> tuple[list[int], np.ndarray]:
        """(class ids seen, ``(blocks, classes, classes)`` confusion counts), blocks in (scene, row, column)
        order, so the bootstrap does not depend on the order the windows arrived in."""
        if not self._rows:
            return [], np.zeros((0, 0, 0), np.int64)
        rows = np.concatenate(self._rows, axis=1)
        rank = np.empty(len(self._blocks), np.int64)
        rank[[self._blocks[key] for key in sorted(self._blocks)]] = np.arange(len(self._blocks))
        classes = np.union1d(rows[1], rows[2])
        t, p = np.searchsorted(classes, rows[1]), np.searchsorted(classes, rows[2])
        k = len(classes)
        flat = np.bincount((rank[rows[0]] * k + t) * k + p, weights=rows[3], minlength=len(self._blocks) * k * k)
        return classes.tolist(), flat.round().astype(np.int64).reshape(len(self._blocks), k, k)

    def scores(self, resamples: int | str = "auto", confidence: float = 0.95, seed: int = 0,
               names: Mapping[int, str] | None = None) -> SceneScores:
        """mIoU, per-class IoU and the block-bootstrap interval of the mIoU."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        classes, blocks = self.per_block()
        if not classes:
            raise ValueError("no pixel to score: the truth has no labelled pixel where the prediction is valid")
        n_resamples = AUTO_RESAMPLES if resamples == "auto" else int(resamples or 0)
        confusion = blocks.sum(0)
        iou = iou_per_class(confusion)
        low = high = float("nan")
        if n_resamples > 0 and len(blocks) > 1:
            rng = np.random.default_rng(seed)
            flat = blocks.reshape(len(blocks), -1).astype(np.float64)
            values = []
            for _ in range(n_resamples):
                weights = np.bincount(rng.integers(0, len(blocks), len(blocks)), minlength=len(blocks))
                values.append(mean_iou((weights @ flat).reshape(confusion.shape)))
            alpha = (1 - confidence) / 2
            low, high = (float(v) for v in np.percentile(values, [100 * alpha, 100 * (1 - alpha)]))
        return SceneScores(
            miou=mean_iou(confusion), ci_low=low, ci_high=high,
            iou={c: float(v) for c, v in zip(classes, iou) if np.isfinite(v)}, classes=classes, confusion=confusion,
            scored_pixels=self.scored, unpredicted_pixels=self.unpredicted, blocks=len(blocks), block=self.block,
            resamples=n_resamples if len(blocks) > 1 else 0, confidence=confidence, seed=seed, names=dict(names or {}),
        )


# ----- rasters -------------------------------------------------------------------------------------
def class_names_of(path: str | Path) -> dict[int, str]:
    """Class names from a class raster's ``classes`` tag: a JSON list (index = class id, as ``segment``
    writes) or a JSON object ``{"id": "name"}``; empty without the tag."""
    with rasterio.open(path) as src:
        text = src.tags().get("classes")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: the classes tag is not JSON ({text[:40]!r})") from None
    return parse_class_names(value, f"{path}: classes tag")


def parse_class_names(value: Any, where: str) -> dict[int, str]:
    """``{id: name}`` from a list (index = id; empty or null entries skipped) or a mapping of ids to names."""
    if isinstance(value, list):
        return {i: str(v) for i, v in enumerate(value) if v not in (None, "")}
    if isinstance(value, Mapping):
        try:
            return {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise ValueError(f"{where}: class ids must be integers, got {sorted(map(str, value))}") from None
    raise ValueError(f"{where}: class names must be a list (index = id) or a mapping id -> name")


def check_same_grid(prediction: Any, truth: Any, prediction_path: Any, truth_path: Any) -> None:
    """Two open rasters must share size, CRS and transform; else a one-line error naming both."""
    same = ((prediction.height, prediction.width) == (truth.height, truth.width)
            and prediction.crs == truth.crs and prediction.transform.almost_equals(truth.transform, precision=1e-6))
    if not same:
        raise ValueError(f"{truth_path}: truth raster is not on the grid of {prediction_path} (size "
                         f"{truth.height}x{truth.width} vs {prediction.height}x{prediction.width}, CRS and transform "
                         "must match); resample it onto the scene's grid")


def truth_window(src: Any, window: Window, label_nodata: int) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, labelled) of a truth raster window: its nodata (else ``label_nodata``) and masked pixels
    are unlabelled; windows may reach past the raster."""
    data = src.read(1, window=window, masked=True, boundless=True)
    values = np.asarray(data.filled(0)).astype(np.int64)
    labelled = ~np.ma.getmaskarray(data) & (values != (label_nodata if src.nodata is None else src.nodata))
    return values, labelled


def score_rasters(pairs: Sequence[tuple[str | Path, str | Path]], block: int = 32, resamples: int | str = "auto",
                  confidence: float = 0.95, seed: int = 0, label_nodata: int = NODATA_CLASS,
                  names: Mapping[int, str] | None = None) -> SceneScores:
    """Score ``(prediction, truth)`` raster pairs together (pooled confusion, blocks of every scene
    resampled together), reading both in strips of ``block`` rows. Class names: ``names``, else the truth
    rasters' ``classes`` tags, else the predictions'."""
    accumulator = BlockConfusion(block)
    found: dict[int, str] = {}
    for scene, (prediction_path, truth_path) in enumerate(pairs):
        with rasterio.open(prediction_path) as pred_src, rasterio.open(truth_path) as truth_src:
            check_same_grid(pred_src, truth_src, prediction_path, truth_path)
            for row in range(0, pred_src.height, accumulator.block):
                window = Window(0, row, pred_src.width, min(accumulator.block, pred_src.height - row))
                truth, labelled = truth_window(truth_src, window, label_nodata)
                accumulator.add(scene, row, 0, truth, labelled, pred_src.read(1, window=window))
        found = {**class_names_of(prediction_path), **found, **class_names_of(truth_path)}
    return accumulator.scores(resamples, confidence, seed, {**found, **dict(names or {})})


def scores_line(scores: SceneScores) -> str:
    """One line for a terminal: mIoU, its interval, IoU per class."""
    interval = (f" [{scores.ci_low:.3f}, {scores.ci_high:.3f}] ({100 * scores.confidence:g} % bootstrap over "
                f"{scores.blocks} blocks of {scores.block} px)" if math.isfinite(scores.ci_low) else
                f" (no interval: {scores.blocks} block(s) of {scores.block} px)")
    per_class = ", ".join(f"{name} {value:.3f}" for name, value in scores.iou_by_name().items())
    return f"mIoU {scores.miou:.3f}{interval} on {scores.scored_pixels} px; IoU {per_class}"
