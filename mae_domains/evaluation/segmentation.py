"""The ``segmentation`` protocol: fine-tune a dense decoder (UNETR-style for 3D, a light multi-level head
for 2D) on a grid encoder's intermediate blocks, score Dice and IoU per label with sliding-window inference.

Data: loaders of batches with one whole image each (``image`` ``(1, C, *spatial)``, ``label``
``(1, *spatial)`` integer classes, ``meta``: the adapter's metadata (voxel ``spacing``, ``channel_names``
...), handed to the encoder through the adapter's ``grid_batch``); :func:`build_segmentation_loaders` makes
them from a manifest CSV (``image,label,split``) through an adapter's ``read_labelled(image, label, stats)``,
which prepares the image as the adapter's evaluation path does (``medical.ct``: labels resampled by nearest
neighbour on the image's grid; ``medical.xray`` / ``.ultrasound``: image and PNG/TIFF mask resized to the
working resolution; ``microscopy.channel_agnostic``: a whole field normalized as a crop is); pairs that
disagree are skipped and listed. A dataset entry's ``mask_ids: instances`` reads instance ids as one
foreground class (id > 0 -> 1, e.g. nuclei), ``classes:`` names the classes (background first).

Training draws seeded random ``roi`` crops (a ``fg_ratio`` share of them centred on a labelled voxel, of an
image that has labels: slices without foreground are most of a medical set) and
minimizes Dice + cross-entropy (MONAI's ``DiceCELoss``); the test images are predicted whole with MONAI's
``sliding_window_inference`` (``roi`` windows, e.g. the model's ``img_size``) and scored per image with
``DiceMetric`` and ``MeanIoU`` (background excluded; an image whose truth lacks a label is left out of that
label's mean, so false positives on an empty image are not counted). Summary: ``dice_mean``, ``iou_mean``
(mean over labels of the mean over images) with 95 % percentile-bootstrap intervals over the test images
(``bootstrap_resamples``, seeded); per class: ``dice``, ``iou``; per image: a CSV from the runner.
"""

from __future__ import annotations

import copy
import csv
import functools
import hashlib
import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric, MeanIoU
from monai.networks.utils import one_hot
from torch import nn

from mae_domains.data.sample import BadSampleError
from mae_domains.device import select_device
from mae_domains.evaluation.loading import DownstreamData, LoadedCheckpoint
from mae_domains.evaluation.metrics import bootstrap_ci, bootstrap_count
from mae_domains.evaluation.segmentation_heads import GridSegmenter
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult

log = logging.getLogger(__name__)
MASK_IDS = ("classes", "instances")
MetaFn = Callable[[Sequence[Mapping[str, Any]], torch.Tensor], dict[str, Any]]


@dataclass
class LabelledVolume:
    image: torch.Tensor  # (C, *spatial) float32
    label: torch.Tensor  # (*spatial) int64
    spacing: list[float] | None
    sample_id: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentationConfig:
    steps: int = 200
    lr: float = 1e-3
    encoder_lr_scale: float = 0.5
    weight_decay: float = 1e-4
    batch_size: int = 2
    roi: int = 96
    fg_ratio: float = 0.5
    feature_size: int = 16
    sw_batch_size: int = 2
    sw_overlap: float = 0.25
    num_classes: int | None = None
    freeze_encoder: bool = False


# ----- data -----------------------------------------------------------------------------------------
class PairLoader:
    """Batches of one labelled image from ``pairs`` (image, label) read by ``reader(image, label) ->
    (Sample, label array)``; pairs that fail to read are skipped, logged and listed in ``skipped``. With
    ``instances`` the label ids are instance ids and become one foreground class (id > 0 -> 1)."""

    def __init__(self, reader: Any, pairs: Sequence[tuple[str, str]], instances: bool = False) -> None:
        self.reader = reader
        self.pairs = list(pairs)
        self.instances = instances
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = []
        for image, label in self.pairs:
            try:
                sample, labels = self.reader(image, label)
            except BadSampleError as err:
                log.warning("segmentation: skipping %s", err)
                self.skipped.append((err.source, err.reason))
                continue
            labels = np.ascontiguousarray(labels, np.int64)
            if self.instances:
                labels = (labels > 0).astype(np.int64)
            yield {"image": torch.from_numpy(np.ascontiguousarray(sample.image, np.float32))[None],
                   "label": torch.from_numpy(labels)[None],
                   "meta": [sample.meta], "sample_id": [str(sample.meta.get("sample_id", image))]}


def read_manifest(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """``split -> [(image, label)]`` from a CSV with columns ``image``, ``label`` and ``split`` (``train`` /
    ``test``); relative paths are taken from the manifest's folder."""
    path = Path(path)
    out: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows, start=2):
        missing = [k for k in ("image", "label", "split") if not row.get(k)]
        if missing:
            raise ValueError(f"{path}:{i}: missing {', '.join(missing)}")
        if row["split"] not in out:
            raise ValueError(f"{path}:{i}: split must be train or test, got {row['split']!r}")
        resolve = lambda p: str(p if Path(p).is_absolute() else path.parent / p)  # noqa: E731
        out[row["split"]].append((resolve(row["image"]), resolve(row["label"])))
    return out


def build_segmentation_loaders(spec: Mapping[str, Any], checkpoint: LoadedCheckpoint, options: Mapping[str, Any],
                               root: Path) -> DownstreamData:
    """A ``build_loaders`` for :func:`~mae_domains.evaluation.runner.run_benchmark`: the dataset entry's
    ``manifest`` (image/label pairs) read through the checkpoint's adapter (``read_labelled``, given the
    checkpoint's normalization statistics), ``mask_ids`` (classes or instances) and ``classes`` (names)."""
    adapter = checkpoint.adapter
    if adapter is None or not hasattr(adapter, "read_labelled"):
        raise ValueError(f"checkpoint {checkpoint.name}: its adapter cannot read image/label pairs")
    mask_ids = spec.get("mask_ids", "classes")
    if mask_ids not in MASK_IDS:
        raise ValueError(f"dataset {spec.get('name')}: mask_ids must be one of {', '.join(MASK_IDS)}, got {mask_ids!r}")
    manifest = Path(spec["manifest"])
    splits = read_manifest(manifest if manifest.is_absolute() else root / manifest)
    reader = adapter.read_labelled
    if "stats" in inspect.signature(reader).parameters:
        reader = functools.partial(reader, stats=checkpoint.stats)
    stats = checkpoint.stats.as_dict() if checkpoint.stats is not None else None
    ident = hashlib.sha256(repr((spec.get("name"), splits, mask_ids, getattr(adapter, "options", {}), stats)).encode()
                           ).hexdigest()[:16]
    instances = mask_ids == "instances"
    return DownstreamData(PairLoader(reader, splits["train"], instances), PairLoader(reader, splits["test"], instances),
                          [str(c) for c in spec.get("classes") or []], ident)


def collect(loader: Iterable[Mapping[str, Any]]) -> list[LabelledVolume]:
    """Whole labelled images from a loader of batches (any batch size)."""
    out = []
    for batch in loader:
        metas = batch.get("meta") or [{}] * batch["image"].shape[0]
        for i in range(batch["image"].shape[0]):
            spacing = metas[i].get("spacing") if isinstance(metas[i], Mapping) else None
            out.append(LabelledVolume(batch["image"][i].float(), batch["label"][i].long(),
                                      None if spacing is None else list(spacing), str(batch["sample_id"][i]),
                                      dict(metas[i]) if isinstance(metas[i], Mapping) else {}))
    return out


def random_crop(volume: LabelledVolume, roi: int, rng: np.random.Generator,
                fg_ratio: float, draw: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``roi`` crop of image and label (zero / background padding where the image is smaller); with
    probability ``fg_ratio`` (``draw``: the uniform draw deciding it, else drawn here) centred on a random
    labelled voxel."""
    spatial = volume.label.shape
    pads = [max(0, roi - s) for s in spatial]
    image, label = volume.image, volume.label
    if any(pads):
        pad = [q for p in reversed(pads) for q in (p // 2, p - p // 2)]
        image = nn.functional.pad(image, pad)
        label = nn.functional.pad(label, pad)
        spatial = label.shape
    foreground = torch.nonzero(label > 0) if (rng.random() if draw is None else draw) < fg_ratio else None
    if foreground is not None and len(foreground):
        centre = foreground[int(rng.integers(len(foreground)))].tolist()
        start = [int(min(max(c - roi // 2, 0), s - roi)) for c, s in zip(centre, spatial)]
    else:
        start = [int(rng.integers(0, s - roi + 1)) for s in spatial]
    index = tuple(slice(s, s + roi) for s in start)
    return image[(slice(None),) + index], label[index]


# ----- training and scoring ------------------------------------------------------------------------
def spacing_meta(spacings: Sequence[list[float] | None], device: torch.device) -> dict[str, torch.Tensor]:
    if any(s is None for s in spacings):
        return {}
    return {"spacing": torch.tensor([list(s) for s in spacings], dtype=torch.float64, device=device)}


def default_meta(metas: Sequence[Mapping[str, Any]], images: torch.Tensor) -> dict[str, Any]:
    """The encoder's metadata without an adapter: the voxel spacing when every image has one."""
    return spacing_meta([m.get("spacing") for m in metas], images.device)


def adapter_meta(grid_batch: Any) -> MetaFn:
    """The encoder's metadata as the adapter makes it for a batch (``grid_batch``: spacing, channel names ...)."""
    return lambda metas, images: dict(grid_batch({"image": images, "meta": list(metas)}, images.device).meta)


def finetune_segmentation(encoder: nn.Module, volumes: Sequence[LabelledVolume], num_classes: int,
                          config: SegmentationConfig, seed: int = 0, device: str | torch.device = "cpu",
                          meta_fn: MetaFn = default_meta) -> GridSegmenter:
    """Train a :class:`GridSegmenter` on a copy of ``encoder`` (seeded crops, decoder init and order)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = GridSegmenter(copy.deepcopy(encoder), num_classes, in_chans=volumes[0].image.shape[0],
                          feature_size=config.feature_size).to(device)
    if config.freeze_encoder:
        model.encoder.requires_grad_(False)
    groups = [{"params": [p for p in model.decoder.parameters()], "lr": config.lr}]
    if not config.freeze_encoder:
        groups.append({"params": list(model.encoder.parameters()), "lr": config.lr * config.encoder_lr_scale})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = np.random.default_rng(seed)
    labelled = [i for i, v in enumerate(volumes) if bool((v.label > 0).any())]
    model.train()
    for _ in range(config.steps):
        picks, crops = training_crops(volumes, labelled, config, rng)
        images = torch.stack([c[0] for c in crops]).to(device)
        labels = torch.stack([c[1] for c in crops]).unsqueeze(1).to(device)
        logits = model(images, meta_fn([_meta(volumes[i]) for i in picks], images))
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def training_crops(volumes: Sequence[LabelledVolume], labelled: Sequence[int], config: SegmentationConfig,
                   rng: np.random.Generator) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
    """One batch: images drawn uniformly, then a ``fg_ratio`` share of the crops centred on a labelled voxel; a
    foreground crop drawn on an image without labels (most slices of a medical set) moves to one of the
    ``labelled`` images. Returns the images' indices and the crops."""
    picks = [int(i) for i in rng.integers(len(volumes), size=config.batch_size)]
    crops = []
    for k, i in enumerate(picks):
        draw = float(rng.random())
        if draw < config.fg_ratio and labelled and i not in labelled:
            picks[k] = i = labelled[int(rng.integers(len(labelled)))]
        crops.append(random_crop(volumes[i], config.roi, rng, config.fg_ratio, draw))
    return picks, crops


def _meta(volume: LabelledVolume) -> dict[str, Any]:
    return {**volume.meta, "spacing": volume.spacing}


@torch.no_grad()
def per_image_scores(model: nn.Module, volumes: Sequence[LabelledVolume], num_classes: int, config: SegmentationConfig,
                     device: str | torch.device = "cpu", meta_fn: MetaFn = default_meta) -> dict[str, np.ndarray]:
    """``{"dice": (N, num_classes - 1), "iou": ...}``: MONAI's ``DiceMetric`` and ``MeanIoU`` of every test
    image (background excluded), predicted whole by sliding windows; NaN where the truth lacks the label."""
    device = torch.device(device)
    metrics = {"dice": DiceMetric(include_background=False, reduction="none", ignore_empty=True),
               "iou": MeanIoU(include_background=False, reduction="none", ignore_empty=True)}
    model.eval()
    for volume in volumes:
        meta = _meta(volume)
        logits = sliding_window_inference(volume.image[None].to(device), config.roi, config.sw_batch_size,
                                          lambda x: model(x, meta_fn([meta] * x.shape[0], x)),
                                          overlap=config.sw_overlap, mode="gaussian", padding_mode="constant")
        pred = one_hot(logits.argmax(1, keepdim=True), num_classes)
        truth = one_hot(volume.label[None, None].to(device), num_classes)
        for metric in metrics.values():
            metric(pred, truth)
    return {name: metric.get_buffer().cpu().numpy().astype(np.float64) for name, metric in metrics.items()}


def mean_over_images(scores: np.ndarray) -> np.ndarray:
    """Per label: the mean over the images (axis -2 of ``(..., N, K)``) where it is defined (MONAI's
    ``mean_batch``), NaN where none is."""
    defined = ~np.isnan(scores)
    counts = defined.sum(axis=-2)
    return np.where(counts > 0, np.where(defined, scores, 0.0).sum(axis=-2) / np.maximum(counts, 1), np.nan)


def label_mean(scores: np.ndarray) -> float | np.ndarray:
    """The summary value: the mean over labels of :func:`mean_over_images` (labels never present left out);
    ``(N, K)`` -> a float, a stack of resamples ``(R, N, K)`` -> ``(R,)`` (the bootstrap's stacked metric)."""
    per_label = mean_over_images(scores)
    defined = ~np.isnan(per_label)
    means = np.where(defined, per_label, 0.0).sum(axis=-1) / np.maximum(defined.sum(axis=-1), 1)
    means = np.where(defined.any(axis=-1), means, np.nan)
    return float(means) if means.ndim == 0 else means


def dice_scores(model: nn.Module, volumes: Sequence[LabelledVolume], num_classes: int, config: SegmentationConfig,
                device: str | torch.device = "cpu", meta_fn: MetaFn = default_meta) -> np.ndarray:
    """Dice per foreground label (``num_classes - 1``) over the test set (mean over the images where the
    label is present in the truth), whole images by sliding windows."""
    return mean_over_images(per_image_scores(model, volumes, num_classes, config, device, meta_fn)["dice"])


class SegmentationProtocol(EvaluationProtocol):
    name = "segmentation"
    description = "Dense decoder on intermediate blocks (UNETR for 3D), Dice and IoU per label by sliding windows."
    trains_encoder = True

    def dataset_builder(self) -> Callable[..., Any]:
        return build_segmentation_loaders  # image/label pairs, not labelled samples

    def defaults(self) -> dict[str, Any]:
        return dict(SegmentationConfig().__dict__)

    def run(self, context: ProtocolContext) -> ProtocolResult:
        if context.encoder is None:
            raise ValueError("segmentation needs an encoder")
        config = SegmentationConfig(**{k: v for k, v in context.settings.items() if k in SegmentationConfig().__dict__})
        train, test = collect(context.train), collect(context.test)
        skipped = [s for loader in (context.train, context.test) for s in getattr(loader, "skipped", [])]
        if not train or not test:
            raise ValueError(f"segmentation needs labelled train and test images; got {len(train)} and {len(test)}"
                             + (f" ({len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
        num_classes = config.num_classes or int(max(int(v.label.max()) for v in train + test)) + 1
        device = select_device(context.device)
        meta_fn = adapter_meta(context.grid_batch) if context.grid_batch is not None else default_meta
        model = finetune_segmentation(context.encoder, train, num_classes, config, context.seed, device, meta_fn)
        scores = per_image_scores(model, test, num_classes, config, device, meta_fn)
        names = list(context.class_names or [])[1:] if context.class_names and len(context.class_names) == num_classes \
            else [f"label_{k}" for k in range(1, num_classes)]
        per_class = {metric: {name: float(v) for name, v in zip(names, mean_over_images(values)) if not np.isnan(v)}
                     for metric, values in scores.items()}
        summary = {f"{metric}_mean": label_mean(values) for metric, values in scores.items()}
        scored = ~np.isnan(scores["dice"]).all(axis=1)  # images where some label is present in the truth
        resamples = bootstrap_count(context.settings.get("bootstrap_resamples", 0), int(scored.sum()))
        intervals = {f"{metric}_mean": bootstrap_ci(label_mean, [values[scored]], resamples,
                                                    float(context.settings.get("confidence", 0.95)), context.seed)
                     for metric, values in scores.items()} if resamples and scored.sum() > 1 else {}
        per_image = [{"sample_id": v.sample_id, **{f"{metric}_{name}": float(values[i, k])
                                                   for metric, values in scores.items() for k, name in enumerate(names)}}
                     for i, v in enumerate(test)]
        return ProtocolResult(summary=summary, per_class=per_class, intervals=intervals, n_train=len(train),
                              n_test=len(test), details={"skipped": skipped, "model": model, "per_image": per_image,
                                                         "images_scored": int(scored.sum())})
