"""Semantic segmentation of whole georeferenced scenes (land cover): fine-tune the 2D segmentation head
on labelled scenes, predict a scene tile by tile, write a GeoTIFF of class ids on the scene's grid.

- The adapter opens a scene as a windowed reader (``adapter.open_scene(path, stats)``: ``height``,
  ``width``, ``crs``, ``transform``, ``meta`` and ``read(row, col, h, w)`` -> normalized ``(C, h, w)``
  and validity ``(h, w)``; windows may reach past the scene). The scene is never read whole.
- Model: the encoder with :class:`~mae_domains.evaluation.segmentation_heads.MultiLevelDecoder2D` on four
  block outputs; grid axes other than y and x (band groups) are averaged per place.
- Training: seeded random ``tile`` windows of the labelled scenes (label rasters on the scene's grid:
  same size, CRS and transform; ``label_nodata`` and invalid pixels are ignored), cross-entropy.
- Inference: centre-crop stitching: tiles of ``tile`` px overlap by ``overlap`` px; each output pixel
  comes from the one tile whose centre part (``overlap / 2`` from its edges) holds it, so a pixel away from
  the scene border always had ``overlap / 2`` px of context on every side. Output: single-band uint8 class
  ids, nodata 255 where the scene has no valid data, deflate-compressed, 256 px tiles, the scene's CRS and
  transform, class names in the tags.
- A trained segmenter is a folder: ``segmenter.safetensors`` (encoder and head) and ``segmenter.json``
  (the run it came from, classes, tile settings); class names come from the training label rasters'
  ``classes`` tag (:func:`~mae_domains.evaluation.scene_scores.class_names_of`).
- Scoring (``--truth``): per-class IoU and mIoU against truth rasters on the scenes' grids, with a
  spatial-block bootstrap interval (:mod:`mae_domains.evaluation.scene_scores`), printed and written to
  ``OUT.scores.json`` (``OUT/scores.json`` for several scenes).
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from safetensors.torch import load_file, save_file
from torch import nn

from mae_domains.evaluation.scene_scores import NODATA_CLASS, class_names_of, score_rasters, scores_line
from mae_domains.evaluation.segmentation_heads import GridSegmenter, encoder_features
from mae_domains.grid import GridBatch
from mae_domains.runs.export import ordinary_permissions

SEGMENTER_JSON = "segmenter.json"
SEGMENTER_WEIGHTS = "segmenter.safetensors"


@dataclass
class SceneSegmentationConfig:
    steps: int = 200
    lr: float = 1e-3
    encoder_lr_scale: float = 0.5
    weight_decay: float = 1e-4
    batch_size: int = 4
    tile: int | None = None  # default: the model's img_size
    overlap: int | None = None  # default: a quarter of the tile
    batch_tiles: int = 4
    label_nodata: int = NODATA_CLASS
    freeze_encoder: bool = False
    bootstrap_block: int = 32  # px side of the spatial blocks the mIoU interval resamples
    bootstrap_resamples: int | str = "auto"  # auto: 1000
    confidence: float = 0.95

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "SceneSegmentationConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown segment setting(s) {unknown}; known: {sorted(known)}")
        return cls(**settings)

    def resolved(self, img_size: int, patch: int) -> "SceneSegmentationConfig":
        tile = int(self.tile or img_size)
        overlap = int(tile // 4 if self.overlap is None else self.overlap)
        if tile % patch:
            raise ValueError(f"segment setting tile={tile} must be a multiple of the patch size {patch}")
        if not 0 <= overlap < tile or overlap % 2:
            raise ValueError(f"segment setting overlap={overlap} must be even and in [0, tile={tile})")
        return SceneSegmentationConfig(**{**asdict(self), "tile": tile, "overlap": overlap})


class SceneSegmenter(GridSegmenter):
    """:class:`GridSegmenter` for 2D scenes whose grid has more axes than y and x (band groups): those
    axes are averaged per place before the 2D head."""

    def forward(self, images: torch.Tensor, meta: Mapping[str, Any] | None = None) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError("scene segmentation takes single-date scenes (B, C, H, W), "
                             f"got shape {tuple(images.shape)}")
        features, _ = encoder_features(self.encoder, GridBatch(images, None, dict(meta or {})), self.blocks)
        features = [f.mean(dim=tuple(range(2, f.ndim - 2))) if f.ndim > 4 else f for f in features]
        return self.decoder(images, features)


# ----- tiling --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    read: tuple[int, int, int, int]  # row, col, height, width of the window read (may pass the scene)
    keep: tuple[int, int, int, int]  # the part written, in scene pixels

    @property
    def offset(self) -> tuple[int, int]:
        """Where ``keep`` starts inside the read window."""
        return self.keep[0] - self.read[0], self.keep[1] - self.read[1]


def tile_plan(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Centre-crop tiles covering a ``height`` x ``width`` scene; kept parts partition the scene."""
    margin = overlap // 2
    core = tile - 2 * margin
    tiles = []
    for r in range(0, height, core):
        for c in range(0, width, core):
            keep = (r, c, min(core, height - r), min(core, width - c))
            tiles.append(Tile((r - margin, c - margin, tile, tile), keep))
    return tiles


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def model_meta(adapter: Any, reader: Any, count: int, device: torch.device) -> dict[str, Any]:
    return adapter.batch_meta({"meta": [reader.meta] * count}, device)


# ----- inference -----------------------------------------------------------------------------------
@torch.no_grad()
def predict_tiles(model: nn.Module, adapter: Any, reader: Any, tiles: Sequence[Tile], device: torch.device,
                  batch_tiles: int = 4) -> Iterator[tuple[Tile, np.ndarray]]:
    """Class ids (uint8, 255 where invalid) of each tile's kept part."""
    model.eval()
    for group in batched(tiles, batch_tiles):
        reads = [reader.read(*t.read) for t in group]
        images = torch.from_numpy(np.stack([r[0] for r in reads])).to(device)
        logits = model(images, model_meta(adapter, reader, len(group), device))
        classes = logits.argmax(1).to(torch.uint8).cpu().numpy()
        for t, (_, valid), pred in zip(group, reads, classes):
            (r0, c0), (_, _, h, w) = t.offset, t.keep
            block = np.where(valid[r0:r0 + h, c0:c0 + w], pred[r0:r0 + h, c0:c0 + w], NODATA_CLASS).astype(np.uint8)
            yield t, block


def segment_scene(model: nn.Module, adapter: Any, reader: Any, out: str | Path, config: SceneSegmentationConfig,
                  device: torch.device, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the class map of ``reader``'s scene to ``out`` (GeoTIFF on the scene's grid); a summary."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tiles = tile_plan(reader.height, reader.width, int(config.tile), int(config.overlap))
    profile = dict(driver="GTiff", height=reader.height, width=reader.width, count=1, dtype="uint8",
                   crs=reader.crs, transform=Affine(*reader.transform), nodata=NODATA_CLASS, compress="deflate",
                   tiled=True, blockxsize=256, blockysize=256)
    counts = np.zeros(256, np.int64)
    tmp = out.with_name(out.name + ".partial")
    with rasterio.open(tmp, "w", **profile) as dst:
        for t, block in predict_tiles(model, adapter, reader, tiles, device, int(config.batch_tiles)):
            r, c, h, w = t.keep
            dst.write(block, 1, window=Window(c, r, w, h))
            counts += np.bincount(block.ravel(), minlength=256)
        dst.set_band_description(1, "class id")
        tags = {"source": str(reader.source), "tile": str(config.tile), "overlap": str(config.overlap)}
        if class_names:
            tags["classes"] = json.dumps(list(class_names))
        dst.update_tags(**tags)
    tmp.replace(out)
    return {"out": str(out), "height": reader.height, "width": reader.width, "tiles": len(tiles),
            "pixels_per_class": {int(k): int(v) for k, v in enumerate(counts) if v and k != NODATA_CLASS},
            "nodata_pixels": int(counts[NODATA_CLASS])}


# ----- training ------------------------------------------------------------------------------------
@dataclass
class LabelledScene:
    reader: Any
    labels: str  # label raster path, on the reader's grid


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """``(image, label)`` rows of a CSV with columns ``image`` and ``label`` (relative to the CSV)."""
    path = Path(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: needs columns image and label (one labelled scene per row)")
    resolve = lambda p: str(p if Path(p).is_absolute() else path.parent / p)  # noqa: E731
    return [(resolve(r["image"]), resolve(r["label"])) for r in rows]


def check_label_grid(scene: LabelledScene) -> None:
    """The label raster must lie on the scene's grid (size, CRS, transform)."""
    with rasterio.open(scene.labels) as src:
        same_size = (src.height, src.width) == (scene.reader.height, scene.reader.width)
        same_crs = src.crs is not None and CRS.from_user_input(scene.reader.crs) == src.crs
        same_transform = src.transform.almost_equals(Affine(*scene.reader.transform), precision=1e-6)
        if not (same_size and same_crs and same_transform):
            raise ValueError(f"{scene.labels}: label raster is not on the grid of {scene.reader.source} (size "
                             f"{src.height}x{src.width} vs {scene.reader.height}x{scene.reader.width}, CRS and "
                             f"transform must match); resample it onto the image's grid")


def label_window(path: str, row: int, col: int, size: int, nodata: int) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, window=Window(col, row, size, size), boundless=True, fill_value=nodata).astype(np.int64)


def label_summary(scenes: Sequence[LabelledScene], nodata: int) -> tuple[int, int]:
    """(largest class id + 1, labelled pixels) over all label rasters (read block by block)."""
    top, labelled = -1, 0
    for scene in scenes:
        with rasterio.open(scene.labels) as src:
            for _, window in src.block_windows(1):
                values = src.read(1, window=window)
                values = values[values != nodata]
                labelled += int(values.size)
                if values.size:
                    top = max(top, int(values.max()))
    if top < 0:
        raise ValueError("the label rasters hold no labelled pixels")
    return top + 1, labelled


def class_count(scenes: Sequence[LabelledScene], nodata: int) -> int:
    """Largest class id + 1 over all label rasters."""
    return label_summary(scenes, nodata)[0]


def class_name_list(names: Mapping[int, str], num_classes: int) -> list[str] | None:
    """Names by class id (``""`` for an id without one), as the class GeoTIFF's ``classes`` tag; None without names."""
    return [names.get(k, "") for k in range(num_classes)] if names else None


def training_batch(scenes: Sequence[LabelledScene], tile: int, count: int, nodata: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for _ in range(count):
        scene = scenes[int(rng.integers(len(scenes)))]
        r = int(rng.integers(0, max(scene.reader.height - tile, 0) + 1))
        c = int(rng.integers(0, max(scene.reader.width - tile, 0) + 1))
        image, valid = scene.reader.read(r, c, tile, tile)
        label = label_window(scene.labels, r, c, tile, nodata)
        labels.append(np.where(valid & (label != nodata), label, -100))
        images.append(image)
    return np.stack(images), np.stack(labels)


def finetune_scene_segmenter(encoder: nn.Module, adapter: Any, scenes: Sequence[LabelledScene], num_classes: int,
                             config: SceneSegmentationConfig, seed: int, device: torch.device) -> SceneSegmenter:
    """Train the 2D head (and, unless frozen, the encoder) on seeded random tiles of labelled scenes."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    in_chans = len(scenes[0].reader.meta.get("band_names") or [])
    model = SceneSegmenter(copy.deepcopy(encoder), num_classes, in_chans=in_chans).to(device)
    if config.freeze_encoder:
        model.encoder.requires_grad_(False)
    groups = [{"params": list(model.decoder.parameters()), "lr": config.lr}]
    if not config.freeze_encoder:
        groups.append({"params": list(model.encoder.parameters()), "lr": config.lr * config.encoder_lr_scale})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    model.train()
    for _ in range(int(config.steps)):
        images, labels = training_batch(scenes, int(config.tile), int(config.batch_size), int(config.label_nodata), rng)
        logits = model(torch.from_numpy(images).to(device), model_meta(adapter, scenes[0].reader, len(images), device))
        target = torch.from_numpy(labels).to(device)
        if not (target >= 0).any():
            continue
        loss = F.cross_entropy(logits, target, ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


# ----- saved segmenters ----------------------------------------------------------------------------
def save_segmenter(model: SceneSegmenter, folder: str | Path, run: str | Path, num_classes: int,
                   config: SceneSegmentationConfig, class_names: Sequence[str] | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / SEGMENTER_WEIGHTS))
    ordinary_permissions(folder / SEGMENTER_WEIGHTS)  # safetensors leaves 0600, unreadable to colleagues
    info = {"run": str(Path(run).resolve()), "num_classes": int(num_classes),
            "class_names": list(class_names) if class_names else None, "tile": config.tile, "overlap": config.overlap}
    (folder / SEGMENTER_JSON).write_text(json.dumps(info, indent=2))
    return folder


def is_segmenter(path: str | Path) -> bool:
    return (Path(path) / SEGMENTER_JSON).is_file()


def read_segmenter_info(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    info = json.loads((folder / SEGMENTER_JSON).read_text())
    if not (folder / SEGMENTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: {SEGMENTER_WEIGHTS} is missing beside {SEGMENTER_JSON}")
    return info


def load_segmenter_weights(encoder: nn.Module, folder: str | Path, info: Mapping[str, Any], in_chans: int,
                           device: torch.device) -> SceneSegmenter:
    model = SceneSegmenter(copy.deepcopy(encoder), int(info["num_classes"]), in_chans=in_chans)
    try:
        model.load_state_dict(load_file(str(Path(folder) / SEGMENTER_WEIGHTS)))
    except RuntimeError as err:
        raise ValueError(f"{folder}: the segmenter weights do not fit the run's model "
                         f"({str(err).splitlines()[0]})") from None
    return model.to(device).eval()


# ----- command -------------------------------------------------------------------------------------
def segment_command(args: Any) -> int:
    """``mae-domains segment --run MODEL SCENE --out OUT.tif [--train PAIRS.csv --save DIR] [--truth TRUTH.tif]
    [k=v ...]``."""
    from mae_domains.device import select_device
    from mae_domains.evaluation.cli_support import parse_settings
    from mae_domains.runs import load_model

    settings = parse_settings(getattr(args, "set", None))
    device = select_device(args.device)
    info: dict[str, Any] = {}
    if is_segmenter(args.model):
        if args.train:
            raise ValueError(f"{args.model} is a trained segmenter; --train fine-tunes a new one from a run folder")
        info = read_segmenter_info(args.model)
        run = info["run"]
    elif not args.train:
        raise ValueError(f"{args.model}: not a trained segmenter (no {SEGMENTER_JSON}); give --train PAIRS.csv "
                         "(columns image,label) to fine-tune one from this run")
    else:
        run = args.model
    loaded = load_model(run, device)
    adapter = loaded.adapter
    if not hasattr(adapter, "open_scene"):
        raise ValueError(f"adapter {adapter.name} cannot open whole georeferenced scenes; segment needs a "
                         "remote-sensing adapter")
    stored = {k: info[k] for k in ("tile", "overlap") if info.get(k) is not None}
    config = SceneSegmentationConfig.from_settings({**stored, **settings}).resolved(
        int(loaded.config.model.img_size), int(loaded.config.model.patch_size))
    encoder = loaded.model.encoder
    in_chans = len(adapter.bands)
    truths = list(getattr(args, "truth", None) or [])
    if truths:  # checked before any training: a truth off the scene's grid is a user's mistake
        if len(truths) != len(args.scenes):
            raise ValueError(f"--truth: give one truth raster per scene ({len(truths)} for {len(args.scenes)} scenes)")
        for scene_path, truth in zip(args.scenes, truths):
            check_label_grid(LabelledScene(adapter.open_scene(scene_path, loaded.stats), truth))
    if info:
        model = load_segmenter_weights(encoder, args.model, info, in_chans, device)
        class_names = info.get("class_names")
    else:
        scenes = [LabelledScene(adapter.open_scene(image, loaded.stats), label)
                  for image, label in read_pairs(args.train)]
        for scene in scenes:
            check_label_grid(scene)
        num_classes = class_count(scenes, int(config.label_nodata))
        model = finetune_scene_segmenter(encoder, adapter, scenes, num_classes, config, int(args.seed), device)
        class_names = class_name_list({k: v for s in reversed(scenes) for k, v in class_names_of(s.labels).items()},
                                      num_classes)
        save_dir = Path(args.save) if args.save else Path(args.out).with_suffix(".segmenter")
        save_segmenter(model, save_dir, run, num_classes, config, class_names)
        print(f"segmenter ({num_classes} classes, {config.steps} steps on {len(scenes)} scene(s)) saved to {save_dir}")
    outputs = []
    for scene_path in args.scenes:
        out = Path(args.out)
        if len(args.scenes) > 1:
            out = out / (Path(scene_path).stem + "_classes.tif")
        summary = segment_scene(model, adapter, adapter.open_scene(scene_path, loaded.stats), out, config, device,
                                class_names)
        outputs.append(out)
        print(f"{scene_path}: {summary['height']}x{summary['width']} px in {summary['tiles']} tiles -> "
              f"{summary['out']} "
              f"(pixels per class {summary['pixels_per_class']}, {summary['nodata_pixels']} nodata)")
    if truths:
        scores = score_rasters(list(zip(outputs, truths)), int(config.bootstrap_block), config.bootstrap_resamples,
                               float(config.confidence), int(args.seed), int(config.label_nodata))
        path = Path(args.out) / "scores.json" if len(args.scenes) > 1 else Path(args.out).with_suffix(".scores.json")
        path.write_text(json.dumps({"predictions": [str(o) for o in outputs], "truths": [str(t) for t in truths],
                                    **scores.to_dict()}, indent=2) + "\n")
        print(f"scores against {', '.join(map(str, truths))}: {scores_line(scores)} -> {path}")
    return 0
