"""Default loaders of the benchmark runner: checkpoints through their adapter, labelled archives.

A checkpoint entry of a benchmark file is one of
- ``path:`` a run's ``checkpoint.pt`` (or the run folder): config, normalization statistics, adapter name
  and step are read from it; an exported ``encoder.safetensors`` (``mae-domains export``) with that
  information in its metadata, in a ``<stem>.json`` or ``config.json`` beside it, or in the run folder's
  ``config.yaml`` / ``stats.json``; or a foreign MAE/timm checkpoint with ``adapter:`` and ``config:``
  given in the entry;
- ``init: random`` with ``like: <other checkpoint>``: the same architecture with fresh weights (baseline);
- ``init: pixels`` with ``like: <other checkpoint>``: the normalized input pixels as features (baseline).

A dataset entry is either ``train:`` / ``test:`` folders (or lists of paths and globs) laid out
``class_name/*.ext`` (single-label, the class is the adapter's ``label_of``, by default the parent
folder), or ``manifest:`` a CSV with columns
``path,labels,split`` (labels separated by ``|``; ``split`` is train or test; multi-label when any row
has several labels or ``multilabel: true``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.data.sample import NormStats, Sample
from mae_domains.evaluation.features import BatchEmbedFn, EncoderEmbedding
from mae_domains.weights import convert_original_mae_keys, load_safetensors, safe_torch_load

log = logging.getLogger(__name__)

CHECKPOINT_KINDS = ("pretrained", "random", "pixels")


@dataclass
class LoadedCheckpoint:
    """A model ready to embed, plus what is needed to build matching datasets.

    ``checkpoint_id`` identifies the weights (a content hash) and keys the feature cache; ``adapter`` is
    the bound adapter instance (None for plain encoders); ``model`` is the MAE (anything with ``encoder``)
    or an encoder, None for the raw-pixel baseline.
    """

    name: str
    checkpoint_id: str
    kind: str = "pretrained"
    adapter_name: str = ""
    adapter: Any = None
    model: nn.Module | None = None
    stats: NormStats | None = None
    config: dict[str, Any] = field(default_factory=dict)
    step: int | None = None

    @property
    def encoder(self) -> nn.Module | None:
        return getattr(self.model, "encoder", self.model)

    def batch_embedder(self, pool: str) -> BatchEmbedFn:
        """``(batch, device) -> (B, D)``: the adapter's ``embed``, the encoder's pooled features or pixels."""
        if self.kind == "pixels":
            return lambda batch, device: batch["image"].to(device).float().flatten(1)
        if self.adapter is not None and self.model is not None:
            adapter, model = self.adapter, self.model
            return lambda batch, device: adapter.embed(model, batch, device, pool)
        embedding = EncoderEmbedding(self.encoder, pool)  # type: ignore[arg-type]
        return lambda batch, device: embedding(batch["image"].to(device))


def file_digest(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's content (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _resolve(path: str | os.PathLike, root: Path) -> Path:
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else root / path


def _json_or_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def run_config_from_export(info: Mapping[str, Any]) -> dict[str, Any]:
    """A run config dict from the flat ``config.json`` that ``mae_domains.export`` writes."""
    model = {k: info[k] for k in ("preset", "patch_size", "img_size", "in_chans", "norm_pix_loss") if k in info}
    config: dict[str, Any] = {"adapter": info.get("adapter", "image"), "model": model,
                              "data": {"sources": list(info.get("data_sources", [])),
                                       "options": dict(info.get("adapter_options", {}))}}
    if "mask_ratio" in info:
        config["mask"] = {"ratio": info["mask_ratio"]}
    return config


def _export_info(path: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    """config / stats / adapter / step of an exported weights file, from (first found) its safetensors
    metadata, ``<stem>.json`` or ``config.json`` beside it, or the run folder's ``config.yaml`` /
    ``stats.json``. The flat export format (``preset``, ``normalization``, ``pretrain_steps``...) is
    converted to a run config."""
    info = {k: _json_or_value(v) for k, v in metadata.items() if k in ("config", "stats", "adapter", "step")}
    if "config" not in info:
        for sidecar in (path.with_suffix(".json"), path.parent / "config.json"):
            if sidecar.is_file():
                loaded = json.loads(sidecar.read_text())
                info["config"] = loaded.get("config", loaded)
                for key in ("stats", "adapter", "step"):
                    if key in loaded:
                        info.setdefault(key, loaded[key])
                break
    if "config" not in info and (path.parent / "config.yaml").is_file():
        info["config"] = yaml.safe_load((path.parent / "config.yaml").read_text())
    config = info.get("config")
    if isinstance(config, Mapping) and "model" not in config and "preset" in config:  # flat export info
        info.setdefault("stats", config.get("normalization"))
        info.setdefault("step", config.get("pretrain_steps"))
        info.setdefault("adapter", config.get("adapter"))
        info["config"] = run_config_from_export(config)
    if not info.get("stats") and (path.parent / "stats.json").is_file():
        info["stats"] = json.loads((path.parent / "stats.json").read_text())
    return info


def _build_from_config(config_data: Mapping[str, Any], adapter_name: str | None) -> tuple[Any, nn.Module, dict[str, Any]]:
    """Bound adapter, freshly built model and resolved config dict for a run configuration."""
    from mae_domains.config import config_from_dict
    from mae_domains.registry import get_adapter

    data = dict(config_data)
    if adapter_name:
        data["adapter"] = adapter_name
    config = config_from_dict(data)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    model = adapter.build_model(config.model, config.mask)
    return adapter, model, config.to_dict()


def _load_foreign_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path) -> None:
    """Original-MAE or timm-style weights: keys renamed to ours; every encoder weight must be present."""
    converted = convert_original_mae_keys(state_dict)
    result = model.load_state_dict(converted, strict=False)
    missing = [k for k in result.missing_keys if k.startswith("encoder.")]
    if missing:
        raise ValueError(f"{source}: encoder weights missing from the checkpoint: {', '.join(missing[:5])}")


def load_pretrained(spec: Mapping[str, Any], root: Path) -> LoadedCheckpoint:
    """A checkpoint entry with ``path:`` (see the module docstring for the accepted files)."""
    path = _resolve(spec["path"], root)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {spec.get('name', path)}: {path} not found")
    if path.suffix == ".safetensors":
        tensors, metadata = load_safetensors(path)
        info = _export_info(path, metadata)
        state_dict: Mapping[str, torch.Tensor] = tensors
    else:
        state = safe_torch_load(path)
        if not isinstance(state, Mapping) or "model" not in state:
            raise ValueError(f"{path}: expected a checkpoint dict with a 'model' entry")
        info = {k: state[k] for k in ("config", "stats", "adapter", "step") if k in state}
        state_dict = state["model"]
    config_data = spec.get("config") or info.get("config")
    if not config_data:
        raise ValueError(f"checkpoint {spec.get('name', path)}: no run config found; add 'config:' (and 'adapter:') to the entry")
    adapter, model, config = _build_from_config(config_data, spec.get("adapter") or info.get("adapter"))
    if path.suffix != ".safetensors" and "config" in info:
        model.load_state_dict(state_dict)  # our own engine checkpoint: exact keys
    else:
        _load_foreign_weights(model, state_dict, path)
    stats = NormStats.from_dict(info["stats"]) if info.get("stats") else None
    step = spec.get("step", info.get("step"))
    return LoadedCheckpoint(
        name=str(spec.get("name", path.stem)), checkpoint_id=f"{path.name}:{file_digest(path)}", kind="pretrained",
        adapter_name=adapter.name, adapter=adapter, model=model.eval(), stats=stats, config=config,
        step=None if step is None else int(step),
    )


def load_checkpoint(spec: Mapping[str, Any], root: Path, loaded: Mapping[str, LoadedCheckpoint]) -> LoadedCheckpoint:
    """Default checkpoint loader of the runner; ``loaded`` holds earlier entries (for ``like:``)."""
    kind = spec.get("init", "pretrained")
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"checkpoint {spec.get('name')}: unknown init {kind!r}; use one of {', '.join(CHECKPOINT_KINDS)}")
    if kind == "pretrained":
        return load_pretrained(spec, root)
    like_name = spec.get("like")
    if like_name not in loaded:
        raise ValueError(f"checkpoint {spec.get('name')}: init {kind!r} needs 'like:' naming an earlier checkpoint entry")
    like = loaded[like_name]
    seed = int(spec.get("seed", 0))
    model = None
    if kind == "random":
        if like.adapter is None:
            raise ValueError(f"checkpoint {spec.get('name')}: init 'random' needs an adapter-built 'like' checkpoint")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = like.adapter.build_model(like.adapter.config.model, like.adapter.config.mask).eval()
    identity = f"{kind}:{like.adapter_name}:{json.dumps(like.config, sort_keys=True, default=str)}:{seed}"
    return LoadedCheckpoint(
        name=str(spec.get("name", f"{kind}-{like_name}")),
        checkpoint_id=f"{kind}:{hashlib.sha256(identity.encode()).hexdigest()[:16]}",
        kind=kind, adapter_name=like.adapter_name, adapter=like.adapter, model=model, stats=like.stats,
        config=like.config, step=None,
    )


class LabelledArchiveDataset(ArchiveDataset):
    """An :class:`ArchiveDataset` whose items carry a label (int class or multi-hot float vector)."""

    def __init__(self, adapter: Any, refs: Sequence[Any], labels: Sequence[Any], stats: NormStats | None,
                 train: bool = False, seed: int = 0) -> None:
        super().__init__(adapter, refs, stats, train=train, seed=seed)
        if len(labels) != len(refs):
            raise ValueError(f"{len(labels)} labels for {len(refs)} samples")
        self.labels = list(labels)

    def to_item(self, sample: Sample, index: int, epoch: int, skipped: list[tuple[str, str]]) -> dict[str, Any]:
        item = super().to_item(sample, index, epoch, skipped)
        label = self.labels[index]
        item["label"] = torch.as_tensor(label, dtype=torch.float32 if np.ndim(label) else torch.int64)
        return item


@dataclass
class DownstreamData:
    """Loaders of one downstream dataset. ``train`` and ``test`` use evaluation transforms (frozen
    features); ``train_augmented`` (shuffled, training transforms) is used for fine-tuning when given.
    ``dataset_id`` identifies files, labels and transforms, and keys the feature cache."""

    train: Any
    test: Any
    class_names: list[str]
    dataset_id: str
    multilabel: bool = False
    train_augmented: Any = None


def _folder_labels(adapter: Any, refs: Sequence[Any], class_names: list[str] | None, where: str) -> tuple[list[int], list[str]]:
    names = [str(adapter.label_of(ref)) for ref in refs]
    class_names = class_names or sorted(set(names))
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"{where}: classes {unknown} do not occur in the training set ({class_names})")
    return [index[n] for n in names], class_names


def _manifest_split(path: Path, multilabel: bool | None) -> tuple[dict[str, tuple[list[Path], list[Any]]], list[str], bool]:
    rows = list(csv.DictReader(path.open(newline="")))
    missing = {"path", "labels", "split"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{path}: manifest needs columns path, labels, split (missing {', '.join(sorted(missing))})")
    parsed = [(row, [s.strip() for s in row["labels"].split("|") if s.strip()]) for row in rows]
    class_names = sorted({name for _, names in parsed for name in names})
    multilabel = any(len(names) != 1 for _, names in parsed) if multilabel is None else multilabel
    index = {name: i for i, name in enumerate(class_names)}
    splits: dict[str, tuple[list[Path], list[Any]]] = {"train": ([], []), "test": ([], [])}
    for row, names in parsed:
        split = row["split"].strip()
        if split not in splits:
            raise ValueError(f"{path}: split must be train or test, got {split!r} for {row['path']}")
        if multilabel:
            label: Any = np.zeros(len(class_names), np.float32)
            label[[index[n] for n in names]] = 1.0
        else:
            label = index[names[0]]
        splits[split][0].append(_resolve(row["path"], path.parent))
        splits[split][1].append(label)
    return splits, class_names, multilabel


def _sources(value: str | Sequence[str], root: Path) -> list[str]:
    """One path/glob or a list of them, resolved against ``root``."""
    values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    return [str(_resolve(v, root)) for v in values]


def _fingerprint(refs: Sequence[Any]) -> list[tuple[str, int, int]]:
    out = []
    for ref in refs:
        p = Path(str(ref))
        stat = p.stat() if p.exists() else None
        out.append((str(ref), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1))
    return out


def build_archive_loaders(spec: Mapping[str, Any], checkpoint: LoadedCheckpoint, options: Mapping[str, Any],
                          root: Path) -> DownstreamData:
    """Default dataset builder: the checkpoint's adapter reads, transforms (evaluation mode) and normalizes
    with the checkpoint's statistics. ``options``: batch_size, num_workers, seed."""
    adapter = checkpoint.adapter
    if adapter is None:
        raise ValueError(f"checkpoint {checkpoint.name} has no adapter; pass build_loaders= to the runner")
    name = str(spec["name"])
    if "manifest" in spec:
        splits, class_names, multilabel = _manifest_split(_resolve(spec["manifest"], root), spec.get("multilabel"))
        train_refs, train_labels = splits["train"]
        test_refs, test_labels = splits["test"]
    else:
        train_refs = adapter.discover(_sources(spec["train"], root))
        test_refs = adapter.discover(_sources(spec["test"], root))
        train_labels, class_names = _folder_labels(adapter, train_refs, spec.get("classes"), f"{name}/train")
        test_labels, _ = _folder_labels(adapter, test_refs, class_names, f"{name}/test")
        multilabel = False
    batch_size, workers, seed = int(options.get("batch_size", 64)), int(options.get("num_workers", 0)), int(options.get("seed", 0))

    def loader(refs: Sequence[Any], labels: Sequence[Any], train: bool) -> DataLoader:
        dataset = LabelledArchiveDataset(adapter, refs, labels, checkpoint.stats, train=train, seed=seed)
        generator = torch.Generator().manual_seed(seed) if train else None
        return DataLoader(dataset, batch_size=batch_size, shuffle=train, num_workers=workers, collate_fn=collate_items,
                          generator=generator, drop_last=train and len(refs) > batch_size)

    identity = {
        "name": name, "adapter": checkpoint.adapter_name, "options": getattr(adapter, "options", {}),
        "model": checkpoint.config.get("model", {}), "stats": checkpoint.stats.as_dict() if checkpoint.stats else None,
        "train": _fingerprint(train_refs), "test": _fingerprint(test_refs), "classes": class_names,
        "labels": [np.asarray(label).tolist() for label in list(train_labels) + list(test_labels)],
    }
    dataset_id = f"{name}:{hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]}"
    return DownstreamData(
        train=loader(train_refs, train_labels, False), test=loader(test_refs, test_labels, False),
        class_names=class_names, dataset_id=dataset_id, multilabel=multilabel,
        train_augmented=loader(train_refs, train_labels, True),
    )


CheckpointLoader = Callable[[Mapping[str, Any], Path, Mapping[str, LoadedCheckpoint]], LoadedCheckpoint]
LoaderBuilder = Callable[[Mapping[str, Any], LoadedCheckpoint, Mapping[str, Any], Path], DownstreamData]
