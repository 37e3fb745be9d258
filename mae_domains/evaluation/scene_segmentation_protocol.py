"""The ``scene_segmentation`` protocol: fine-tune the scene segmenter of ``mae-domains segment`` on labelled
scenes, predict the test scenes tile by tile and score them: per-class IoU and mIoU with a spatial-block
bootstrap interval (:mod:`mae_domains.evaluation.scene_scores`).

A benchmark dataset entry names pair CSVs (columns ``image,label``, paths relative to the CSV; label
rasters on the image's grid)::

    - name: landcover-map
      train: pairs_train.csv     # scenes with a label raster where only training pixels are labelled
      test: pairs_test.csv       # scenes with a truth raster where only test pixels are labelled
      classes: {1: developed}    # optional: id -> name (else the label rasters' ``classes`` tags)

read through the checkpoint's adapter (``open_scene``) with its normalization statistics
(:func:`build_scene_loaders`, the protocol's ``dataset_builder``). Settings: those of
:class:`~mae_domains.evaluation.scene_segmentation.SceneSegmentationConfig` (steps, tile, overlap,
bootstrap_block ...). Records: ``miou`` (with its interval), ``iou`` per class; ``n_train`` / ``n_test`` are
labelled training pixels and scored test pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import rasterio
from rasterio.windows import Window

from mae_domains.device import select_device
from mae_domains.evaluation.loading import DownstreamData, LoadedCheckpoint
from mae_domains.evaluation.scene_scores import BlockConfusion, class_names_of, parse_class_names, truth_window
from mae_domains.evaluation.scene_segmentation import (
    LabelledScene, SceneSegmentationConfig, check_label_grid, finetune_scene_segmenter, label_summary, predict_tiles,
    read_pairs, tile_plan,
)
from mae_domains.protocols import EvaluationProtocol, ProtocolContext, ProtocolResult


@dataclass
class ScenePairs:
    """The labelled scenes of one split, opened through ``adapter`` with ``stats``; the model's ``img_size``
    and ``patch_size`` (the tile defaults) and the class names by id."""

    adapter: Any
    stats: Any
    pairs: list[tuple[str, str]]
    names: dict[int, str]
    img_size: int
    patch_size: int

    def __len__(self) -> int:
        return len(self.pairs)

    def open(self) -> list[LabelledScene]:
        scenes = [LabelledScene(self.adapter.open_scene(image, self.stats), label) for image, label in self.pairs]
        for scene in scenes:
            check_label_grid(scene)
        return scenes


def pair_rows(value: str | Sequence[str], root: Path, where: str) -> list[tuple[str, str]]:
    """The (image, label) rows of one pair CSV or a list of them, resolved against ``root``."""
    paths = [value] if isinstance(value, str) else list(value)
    rows: list[tuple[str, str]] = []
    for path in paths:
        path = Path(path) if Path(path).is_absolute() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"{where}: {path} not found (a CSV of image,label pairs)")
        rows += read_pairs(path)
    if not rows:
        raise ValueError(f"{where}: no image,label pairs")
    return rows


def build_scene_loaders(spec: Mapping[str, Any], checkpoint: LoadedCheckpoint, options: Mapping[str, Any],
                        root: Path) -> DownstreamData:
    """A runner ``build_loaders`` for scene / label raster pairs (module docstring)."""
    name = str(spec["name"])
    adapter = checkpoint.adapter
    if adapter is None or not hasattr(adapter, "open_scene"):
        raise ValueError(f"dataset {name}: scene_segmentation needs an adapter that opens whole georeferenced "
                         f"scenes (remote sensing); checkpoint {checkpoint.name} has {checkpoint.adapter_name or 'none'}")
    for key in ("train", "test"):
        if not spec.get(key):
            raise ValueError(f"dataset {name}: scene_segmentation needs {key}: a CSV of image,label pairs")
    train, test = (pair_rows(spec[k], root, f"dataset {name} {k}") for k in ("train", "test"))
    if spec.get("classes") is not None:
        names = parse_class_names(spec["classes"], f"dataset {name} classes")
    else:
        names = {k: v for _, label in reversed(train + test) for k, v in class_names_of(label).items()}
    model = checkpoint.config.get("model", {})
    img_size, patch = int(model.get("img_size", 0) or 0), int(model.get("patch_size", 0) or 0)
    identity = {"name": name, "adapter": checkpoint.adapter_name, "options": getattr(adapter, "options", {}),
                "stats": checkpoint.stats.as_dict() if checkpoint.stats else None, "names": names,
                "pairs": [[p, Path(p).stat().st_mtime_ns] for pair in train + test for p in pair if Path(p).exists()]}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    split = lambda pairs: ScenePairs(adapter, checkpoint.stats, pairs, names, img_size, patch)  # noqa: E731
    return DownstreamData(split(train), split(test), [names[k] for k in sorted(names)], f"{name}:{digest}")


class SceneSegmentationProtocol(EvaluationProtocol):
    name = "scene_segmentation"
    description = "Fine-tune the scene segmenter on labelled scenes; per-class IoU and mIoU on test scenes."
    trains_encoder = True

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in fields(SceneSegmentationConfig)}

    def dataset_builder(self) -> Callable[..., DownstreamData]:
        return build_scene_loaders

    def run(self, context: ProtocolContext) -> ProtocolResult:
        train, test = context.train, context.test
        if not (isinstance(train, ScenePairs) and isinstance(test, ScenePairs)):
            raise ValueError("scene_segmentation reads scene / label raster pairs; give the dataset entry train: "
                             "and test: CSVs of image,label pairs")
        if context.encoder is None:
            raise ValueError("scene_segmentation needs an encoder")
        known = {f.name for f in fields(SceneSegmentationConfig)}
        config = SceneSegmentationConfig.from_settings({k: v for k, v in context.settings.items() if k in known})
        config = config.resolved(train.img_size, train.patch_size)
        nodata = int(config.label_nodata)
        scenes = train.open()
        top, labelled = label_summary(scenes, nodata)
        num_classes = max(top, max(train.names, default=-1) + 1)
        device = select_device(context.device)
        model = finetune_scene_segmenter(context.encoder, train.adapter, scenes, num_classes, config, context.seed,
                                         device)
        counts = BlockConfusion(int(config.bootstrap_block))
        for index, scene in enumerate(test.open()):
            tiles = tile_plan(scene.reader.height, scene.reader.width, int(config.tile), int(config.overlap))
            with rasterio.open(scene.labels) as truth_src:
                for tile, block in predict_tiles(model, test.adapter, scene.reader, tiles, device,
                                                 int(config.batch_tiles)):
                    r, c, h, w = tile.keep
                    truth, known_pixels = truth_window(truth_src, Window(c, r, w, h), nodata)
                    counts.add(index, r, c, truth, known_pixels, block)
        scores = counts.scores(config.bootstrap_resamples, float(config.confidence), context.seed, test.names)
        return ProtocolResult(summary={"miou": scores.miou}, intervals={"miou": (scores.ci_low, scores.ci_high)},
                              per_class={"iou": scores.iou_by_name()}, n_train=labelled, n_test=scores.scored_pixels,
                              details={"scores": scores.to_dict(), "model": model, "config": config})
