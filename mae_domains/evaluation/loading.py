"""Default loaders of the benchmark runner: checkpoint entries and labelled dataset entries.

A checkpoint entry of a benchmark file is one of
- ``path:`` anything :func:`mae_domains.runs.load_model` opens: a run folder or its ``checkpoint.pt``, an
  export folder or its ``encoder.safetensors``; or foreign MAE/timm weights with ``adapter:`` and
  ``config:`` given in the entry (``config:`` also replaces the config found with the weights);
- ``init: random`` with ``like: <other checkpoint>``: the same architecture with fresh weights (baseline);
- ``init: pixels`` with ``like: <other checkpoint>``: the normalized input pixels as features (baseline).

A dataset entry is either ``train:`` / ``test:`` folders (or lists of paths and globs) laid out
``class_name/*.ext`` (the class is the adapter's ``label_of``, by default the parent folder) or CSV label
lists, or ``manifest:`` one CSV whose ``split`` column says train or test. CSVs are read by the adapter
when it reads manifests (e.g. the medical adapters' ``image,labels`` with ``A|B|C``), else in the
runner's ``path,labels[,split]`` format (:mod:`mae_domains.labelled.label_lists`); multi-label
when any row has a set of labels, or ``multilabel: true``. ``train_fraction:`` (0 < f <= 1) keeps a
stratified share of the training labels (per class ``max(1, round(f * count))``, drawn with
``fraction_seed``, default 0), for label-fraction curves; the test split stays whole. ``test:`` alone suffices for protocols that
only score the test split (``anomaly``). ``bootstrap_groups:`` (read by the runner, not here) names a
``path,<unit>`` CSV of dependent test samples (:mod:`mae_domains.evaluation.sample_groups`). Fine-tuning's
training loader uses the adapter's
``finetune_transform`` with the protocol's resolved settings (``DownstreamData.finetune_loader``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from mae_domains.data.loaders import evaluation_loader
from mae_domains.data.sample import NormStats
from mae_domains.evaluation.features import BatchEmbedFn, EncoderEmbedding
from mae_domains.evaluation.finetune_transforms import FinetuneTransformReader
from mae_domains.shards import prepared_reader
from mae_domains.labelled.label_lists import LabelledRefs, encode_labels, read_labelled
from mae_domains.conversion import split_family
from mae_domains.runs import LoadedModel, build_model, model_from_source, open_weights
from mae_domains.runs.initial_weights import OWN_KINDS, load_initial_weights

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
    source_kind: str = "checkpoint"

    @property
    def encoder(self) -> nn.Module | None:
        return getattr(self.model, "encoder", self.model)

    @property
    def full_model(self) -> nn.Module | None:
        """The whole MAE (encoder and trained decoder) when the weights held one: a run's checkpoint; None
        for encoder-only exports, foreign encoders and the baselines."""
        if self.kind != "pretrained" or self.source_kind != "checkpoint" or not hasattr(self.model, "decoder"):
            return None
        return self.model

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


def load_pretrained(spec: Mapping[str, Any], root: Path) -> LoadedCheckpoint:
    """A checkpoint entry with ``path:`` (see the module docstring for the accepted files)."""
    family, raw_path = split_family(str(spec["path"]))
    family = spec.get("family", family)
    path = _resolve(raw_path, root)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {spec.get('name', path)}: {path} not found")
    source = open_weights(path)
    if source.kind not in OWN_KINDS and (spec.get("adapter") or family):
        loaded = converted_model(source, family, spec)
    else:
        loaded = model_from_source(source, config=spec.get("config"), adapter_name=spec.get("adapter"))
    step = spec.get("step", loaded.step)
    return LoadedCheckpoint(
        name=str(spec.get("name", source.path.stem)), checkpoint_id=f"{source.path.name}:{file_digest(source.path)}",
        kind="pretrained", adapter_name=loaded.adapter.name, adapter=loaded.adapter, model=loaded.model,
        stats=loaded.stats, config=loaded.config.to_dict(), step=None if step is None else int(step),
        source_kind=loaded.kind,
    )


def converted_model(source: Any, family: str | None, spec: Mapping[str, Any]) -> LoadedModel:
    """Published weights (``family:`` or found from the keys) converted into the model of the entry's
    ``adapter:`` and ``config:`` (the adapter's defaults without one); the conversion report is logged."""
    config = dict(spec.get("config") or {})
    adapter_name = spec.get("adapter") or config.get("adapter")
    if not adapter_name:
        raise ValueError(f"checkpoint {spec.get('name', source.path)}: published weights need an adapter "
                         f"(adapter: in the entry, or --adapter)")
    adapter, model, run_config = build_model(config, adapter_name)
    load_initial_weights(model, f"{family}:{source.path}" if family else source.path, adapter, run_config, source)
    return LoadedModel(adapter, model.eval(), None, run_config, None, source.path, "foreign")


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
        model = build_model(like.config, like.adapter_name, seed=seed)[1].eval()
    identity = f"{kind}:{like.adapter_name}:{json.dumps(like.config, sort_keys=True, default=str)}:{seed}"
    return LoadedCheckpoint(
        name=str(spec.get("name", f"{kind}-{like_name}")),
        checkpoint_id=f"{kind}:{hashlib.sha256(identity.encode()).hexdigest()[:16]}",
        kind=kind, adapter_name=like.adapter_name, adapter=like.adapter, model=model, stats=like.stats,
        config=like.config, step=None,
    )


@dataclass
class DownstreamData:
    """Loaders of one downstream dataset. ``train`` and ``test`` use evaluation transforms (frozen
    features; ``train`` is None when only a test split was given); ``train_augmented`` (shuffled,
    training transforms) is used for fine-tuning when given, unless ``finetune_loader(settings)`` builds
    one with the adapter's fine-tuning transform for the protocol's resolved settings. ``dataset_id``
    identifies files, labels and transforms, and keys the feature cache."""

    train: Any
    test: Any
    class_names: list[str]
    dataset_id: str
    multilabel: bool = False
    train_augmented: Any = None
    finetune_loader: Callable[[Mapping[str, Any]], Any] | None = None


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
    train_set, test_set = labelled_splits(adapter, spec, root)
    if spec.get("train_fraction") is not None:
        keep = stratified_subset(train_set.labels, float(spec["train_fraction"]), int(spec.get("fraction_seed", 0)), name)
        train_set = LabelledRefs([train_set.refs[i] for i in keep], [train_set.labels[i] for i in keep],
                                 [train_set.splits[i] for i in keep])
    train_refs, test_refs = train_set.refs, test_set.refs
    adapter = prepared_reader(adapter, train_refs + test_refs)  # reads samples of prepared shards from them
    train_labels, test_labels, class_names, multilabel = encode_labels(
        train_set.labels, test_set.labels, spec.get("classes"), spec.get("multilabel"), name)
    batch_size, workers, seed = int(options.get("batch_size", 64)), int(options.get("num_workers", 0)), int(options.get("seed", 0))

    def loader(refs: Sequence[Any], labels: Sequence[Any], train: bool, reader: Any = adapter) -> DataLoader:
        return evaluation_loader(reader, refs, checkpoint.stats, batch_size=batch_size, seed=seed, labels=labels,
                                 train=train, shuffle=train, drop_last=train and len(refs) > batch_size,
                                 num_workers=workers, skip_bad=True)  # a bad file is left out, never replaced

    identity = {
        "name": name, "adapter": checkpoint.adapter_name, "options": getattr(adapter, "options", {}),
        "model": checkpoint.config.get("model", {}), "stats": checkpoint.stats.as_dict() if checkpoint.stats else None,
        "train": _fingerprint(train_refs), "test": _fingerprint(test_refs), "classes": class_names,
        "labels": [np.asarray(label).tolist() for label in list(train_labels) + list(test_labels)],
    }
    dataset_id = f"{name}:{hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]}"

    def finetune_loader(settings: Mapping[str, Any]) -> DataLoader:
        return loader(train_refs, train_labels, True, FinetuneTransformReader(adapter, settings))

    has_train = bool(train_refs)
    return DownstreamData(
        train=loader(train_refs, train_labels, False) if has_train else None,
        test=loader(test_refs, test_labels, False), class_names=class_names, dataset_id=dataset_id,
        multilabel=multilabel, train_augmented=loader(train_refs, train_labels, True) if has_train else None,
        finetune_loader=finetune_loader if has_train else None,
    )


def stratified_subset(labels: Sequence[Any], fraction: float, seed: int = 0, where: str = "dataset") -> list[int]:
    """Sorted indices of a seeded, class-stratified ``fraction`` of ``labels``: ``max(1, round(fraction * n))``
    of each class's ``n`` samples (a multi-label row counts under its sorted label tuple)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"dataset {where}: train_fraction must be in (0, 1], got {fraction}")
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        key = "|".join(sorted(map(str, label))) if isinstance(label, (tuple, list)) else str(label)
        by_class.setdefault(key, []).append(i)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for key in sorted(by_class):
        members = by_class[key]
        count = max(1, int(round(fraction * len(members))))
        keep += rng.choice(members, size=count, replace=False).tolist()
    return sorted(keep)


def labelled_splits(adapter: Any, spec: Mapping[str, Any], root: Path) -> tuple[LabelledRefs, LabelledRefs]:
    """The training and test references of a dataset entry with their raw labels (module docstring)."""
    name = str(spec["name"])
    if "manifest" in spec:
        path = _resolve(spec["manifest"], root)
        found = read_labelled(adapter, [path])
        if any(s is None for s in found.splits):
            raise ValueError(f"{path}: a manifest needs a split column (train or test on every row), read by "
                             f"adapter {getattr(adapter, 'name', '?')}; or give train= and test= lists")
        other = sorted({str(s) for s in found.splits if s not in ("train", "test")})
        if other:
            raise ValueError(f"{path}: the split column must say train or test; found {', '.join(other)}")
        return found.split("train"), found.split("test")
    train = read_labelled(adapter, _sources(spec["train"], root)) if spec.get("train") else LabelledRefs()
    if not spec.get("test"):
        raise ValueError(f"dataset {name}: give test= (and train=) or manifest=")
    return train, read_labelled(adapter, _sources(spec["test"], root))


CheckpointLoader = Callable[[Mapping[str, Any], Path, Mapping[str, LoadedCheckpoint]], LoadedCheckpoint]
LoaderBuilder = Callable[[Mapping[str, Any], LoadedCheckpoint, Mapping[str, Any], Path], DownstreamData]
