"""Run evaluation protocols and benchmark files, producing :class:`ResultRecord` lists and reports.

- :func:`run_protocol`: one protocol (``knn``, ``linear_probe``, ``finetune``) on a model and a pair of
  loaders; returns summary records (with bootstrap intervals) and per-class records.
- :func:`run_benchmark` / :func:`run_benchmark_file`: every (checkpoint x dataset x protocol) entry of a
  benchmark spec (see ``benchmarks/downstream.yaml``), writing ``results.jsonl``, ``results.csv``,
  ``results.md``, ``summary.md`` and ``plots/*.png``. Checkpoint and dataset loading are callbacks
  (defaults in :mod:`mae_domains.evaluation.loading` go through the adapter registry).
- :func:`evaluate_checkpoint`: one checkpoint, one dataset, one protocol (what ``mae-domains evaluate`` runs).
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml
from torch import nn

from mae_domains.evaluation.features import BatchEmbedFn, EmbedFn, FeatureCache, cached_features
from mae_domains.evaluation.finetune import FinetuneConfig, finetune
from mae_domains.evaluation.knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_scores
from mae_domains.evaluation.linear_probe import LinearProbeConfig, linear_probe
from mae_domains.evaluation.loading import (
    CheckpointLoader, DownstreamData, LoadedCheckpoint, LoaderBuilder, build_archive_loaders, load_checkpoint,
)
from mae_domains.evaluation.metrics import classification_report
from mae_domains.evaluation.records import ResultRecord, write_jsonl, write_reports

log = logging.getLogger(__name__)

PROTOCOLS = ("knn", "linear_probe", "finetune")
AUTO_BOOTSTRAP_MAX_TEST = 5000  # "auto" bootstraps test sets up to this size (1000 resamples)
SPEC_KEYS = {"name", "output", "root", "seeds", "device", "batch_size", "num_workers", "progress", "cache",
             "checkpoints", "datasets", "protocols", "runs"}


def _common_defaults() -> dict[str, Any]:
    return {"bootstrap_resamples": "auto", "confidence": 0.95}


def protocol_defaults(protocol: str) -> dict[str, Any]:
    """Every setting of a protocol with its default value (the seed is passed separately)."""
    if protocol == "knn":
        specific: dict[str, Any] = {"k": DEFAULT_K, "temperature": DEFAULT_TEMPERATURE, "pool": "cls"}
    elif protocol == "linear_probe":
        specific = {**LinearProbeConfig().settings(), "pool": "cls"}
    elif protocol == "finetune":
        specific = FinetuneConfig().settings()
    else:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    specific.pop("seed", None)
    return {**specific, **_common_defaults()}


def resolve_settings(protocol: str, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overridden by ``settings``; unknown keys are errors with a suggestion."""
    defaults = protocol_defaults(protocol)
    for key in settings or {}:
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"protocol {protocol}: unknown setting {key!r}{hint}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **dict(settings or {})}


def _bootstrap_count(setting: Any, n_test: int) -> int:
    if setting == "auto":
        return 1000 if n_test <= AUTO_BOOTSTRAP_MAX_TEST else 0
    return int(setting or 0)


def _dataset_size(loader: Any) -> int:
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if dataset is not None and hasattr(dataset, "__len__") else 0


def _num_classes(class_names: Sequence[str] | None, *labels: np.ndarray) -> int:
    if class_names is not None:
        return len(class_names)
    if labels[0].ndim == 2:
        return labels[0].shape[1]
    return int(max(int(l.max()) for l in labels if l.size)) + 1


def run_protocol(
    protocol: str,
    train_loader: Iterable[Mapping[str, Any]],
    test_loader: Iterable[Mapping[str, Any]],
    *,
    encoder: nn.Module | None = None,
    embed_fn: EmbedFn | nn.Module | None = None,
    embed_batch: BatchEmbedFn | None = None,
    settings: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    adapter: str = "",
    checkpoint: str = "",
    dataset: str = "",
    step: int | None = None,
    feature_cache: FeatureCache | str | os.PathLike | None = None,
    checkpoint_id: str | None = None,
    dataset_id: str | None = None,
    finetune_train_loader: Iterable[Mapping[str, Any]] | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> list[ResultRecord]:
    """Evaluate one protocol and return its records (summary metrics first, then per-class values).

    The model is ``embed_batch(batch, device)``, ``embed_fn(images)`` or ``encoder`` (pooled with the
    ``pool`` setting) for ``knn``/``linear_probe``; ``finetune`` needs ``encoder`` (a ViTEncoder) and trains
    on ``finetune_train_loader`` (augmented) when given, else on ``train_loader``. Features are cached in
    ``feature_cache`` under (``checkpoint_id`` or ``checkpoint``, ``dataset_id`` or ``dataset``, pool).
    """
    resolved = resolve_settings(protocol, settings)
    if protocol in ("knn", "linear_probe"):
        model = embed_fn if embed_fn is not None else encoder
        if model is None and embed_batch is None:
            raise ValueError(f"{protocol}: give encoder=, embed_fn= or embed_batch=")
        ckpt_key, data_key = checkpoint_id or checkpoint, dataset_id or dataset
        if feature_cache is not None and not (ckpt_key and data_key):
            raise ValueError("a feature cache needs checkpoint/dataset ids (checkpoint_id=, dataset_id=)")
        common = dict(device=device, pool=resolved["pool"], progress=progress, embed_batch=embed_batch)
        train = cached_features(model, train_loader, feature_cache, ckpt_key, f"{data_key}/train", **common)
        test = cached_features(model, test_loader, feature_cache, ckpt_key, f"{data_key}/test", **common)
        num_classes = _num_classes(class_names, train.labels, test.labels)
        if protocol == "knn":
            scores = knn_scores(train.features, train.labels, test.features, int(resolved["k"]),
                                float(resolved["temperature"]), num_classes, device=device)
        else:
            probe_fields = {k: resolved[k] for k in LinearProbeConfig().settings() if k != "seed"}
            config = LinearProbeConfig(**probe_fields, seed=seed, device=device)
            scores = linear_probe(train.features, train.labels, test.features, config, num_classes).test_scores
        labels, n_train = test.labels, len(train)
    elif protocol == "finetune":
        if encoder is None:
            raise ValueError("finetune needs encoder= (a ViTEncoder)")
        fields = {k: resolved[k] for k in FinetuneConfig().settings() if k != "seed"}
        config = FinetuneConfig(**fields, seed=seed, device=device)
        train_source = finetune_train_loader if finetune_train_loader is not None else train_loader
        if class_names is not None:
            num_classes = len(class_names)
        else:  # multi-hot labels carry the class count; integer labels need class_names
            first_labels = np.asarray(next(iter(train_source))["label"])
            if first_labels.ndim != 2:
                raise ValueError("finetune needs class_names= to know the number of classes")
            num_classes = first_labels.shape[1]
        result = finetune(encoder, train_source, test_loader, num_classes, config, progress)
        scores, labels = result.test_scores, result.test_labels.numpy()  # type: ignore[union-attr]
        n_train = _dataset_size(train_source)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")

    n_test = len(labels)
    report = classification_report(
        scores, labels, class_names, _bootstrap_count(resolved["bootstrap_resamples"], n_test),
        float(resolved["confidence"]), seed,
    )
    base = dict(adapter=adapter, checkpoint=checkpoint, dataset=dataset, protocol=protocol, settings=resolved,
                seed=seed, n_train=n_train, n_test=n_test, step=step)
    records = []
    for metric, value in report.summary.items():
        low, high = report.intervals.get(metric, (None, None))
        records.append(ResultRecord(metric=metric, value=value, ci_low=low, ci_high=high, **base))
    for metric, values in report.per_class.items():
        for class_name, value in values.items():
            records.append(ResultRecord(metric=metric, value=value, class_name=class_name, **base))
    summary = ", ".join(f"{m}={v:.4f}" for m, v in report.summary.items())
    log.info("%s on %s with %s (seed %d): %s", protocol, dataset, checkpoint, seed, summary)
    return records


def _by_name(entries: Sequence[Mapping[str, Any]], what: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ValueError(f"{what}[{i}]: each entry needs a 'name'")
        if entry["name"] in out:
            raise ValueError(f"{what}: duplicate name {entry['name']!r}")
        out[str(entry["name"])] = entry
    return out


def expand_runs(spec: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(checkpoint, dataset, protocol) names to run: ``runs:`` entries (each with ``checkpoints``,
    ``datasets``, ``protocols`` lists, any of them omitted = all), or the full cross product."""
    checkpoints = [str(c["name"]) for c in spec["checkpoints"]]
    datasets = [str(d["name"]) for d in spec["datasets"]]
    protocols = [str(p["name"]) for p in spec["protocols"]]
    blocks = spec.get("runs") or [{}]
    out: list[tuple[str, str, str]] = []
    for block in blocks:
        for key, known in (("checkpoints", checkpoints), ("datasets", datasets), ("protocols", protocols)):
            unknown = set(block.get(key, [])) - set(known)
            if unknown:
                raise ValueError(f"runs: unknown {key} {sorted(unknown)}; known: {known}")
        for c in block.get("checkpoints", checkpoints):
            for d in block.get("datasets", datasets):
                for p in block.get("protocols", protocols):
                    if (c, d, p) not in out:
                        out.append((c, d, p))
    return out


def validate_spec(spec: Mapping[str, Any], where: str = "benchmark") -> None:
    """Top-level keys, required sections and protocol names."""
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        hints = "; ".join(f"{k!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, SPEC_KEYS, 1)) else "")
                          for k in sorted(unknown))
        raise ValueError(f"{where}: unknown key(s) {hints}")
    for section in ("checkpoints", "datasets", "protocols"):
        if not spec.get(section):
            raise ValueError(f"{where}: '{section}' must list at least one entry")
    for entry in spec["protocols"]:
        protocol = str(entry.get("protocol", entry.get("name")))
        resolve_settings(protocol, {k: v for k, v in entry.items() if k not in ("name", "protocol")})


def run_benchmark(
    spec: Mapping[str, Any],
    out_dir: str | os.PathLike,
    build_loaders: LoaderBuilder | None = None,
    load_checkpoint_fn: CheckpointLoader | None = None,
    root: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool | None = None,
    plots: bool = True,
) -> list[ResultRecord]:
    """Run every entry of a benchmark spec (a parsed benchmark file) and write the reports to ``out_dir``.

    ``load_checkpoint_fn(entry, root, loaded) -> LoadedCheckpoint`` and ``build_loaders(entry, checkpoint,
    options, root) -> DownstreamData`` default to the adapter-based loaders. Relative paths resolve against
    ``root`` (argument, else the spec's ``root``, else the working directory). Linear probe and fine-tuning
    run once per seed, kNN (deterministic) once. ``results.jsonl`` is rewritten after every entry.
    """
    validate_spec(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root_path = Path(root if root is not None else spec.get("root", "."))
    build_loaders = build_loaders or build_archive_loaders
    load_checkpoint_fn = load_checkpoint_fn or load_checkpoint
    device = device or str(spec.get("device", "auto"))
    progress = progress if progress is not None else spec.get("progress")
    seeds = [int(s) for s in spec.get("seeds", [0])]
    cache_setting = spec.get("cache", True)
    cache = FeatureCache(out_dir / "feature_cache") if cache_setting is True else (
        FeatureCache(root_path / str(cache_setting)) if cache_setting else None)
    options = {"batch_size": spec.get("batch_size", 64), "num_workers": spec.get("num_workers", 0), "seed": seeds[0]}
    checkpoint_specs = _by_name(spec["checkpoints"], "checkpoints")
    dataset_specs = _by_name(spec["datasets"], "datasets")
    protocol_specs = _by_name(spec["protocols"], "protocols")

    loaded: dict[str, LoadedCheckpoint] = {}

    def get_checkpoint(name: str) -> LoadedCheckpoint:
        if name not in loaded:
            like = checkpoint_specs[name].get("like")
            if like is not None:
                if like not in checkpoint_specs:
                    raise ValueError(f"checkpoint {name}: 'like' names unknown checkpoint {like!r}")
                get_checkpoint(str(like))
            loaded[name] = load_checkpoint_fn(checkpoint_specs[name], root_path, loaded)
        return loaded[name]

    data_memo: dict[tuple[str, str], DownstreamData] = {}
    records: list[ResultRecord] = []
    for checkpoint_name, dataset_name, protocol_name in expand_runs(spec):
        ckpt = get_checkpoint(checkpoint_name)
        key = (checkpoint_name, dataset_name)
        if key not in data_memo:
            data_memo[key] = build_loaders(dataset_specs[dataset_name], ckpt, options, root_path)
        data = data_memo[key]
        protocol_entry = protocol_specs[protocol_name]
        protocol = str(protocol_entry.get("protocol", protocol_name))
        settings = {k: v for k, v in protocol_entry.items() if k not in ("name", "protocol")}
        if protocol == "finetune" and ckpt.kind == "pixels":
            log.warning("skipping finetune for %s: raw pixels have no encoder to fine-tune", checkpoint_name)
            continue
        pool = resolve_settings(protocol, settings)["pool"]
        for seed in seeds[:1] if protocol == "knn" else seeds:
            records += run_protocol(
                protocol, data.train, data.test,
                encoder=ckpt.encoder, embed_batch=ckpt.batch_embedder(pool) if protocol != "finetune" else None,
                settings=settings, class_names=data.class_names, seed=seed, adapter=ckpt.adapter_name,
                checkpoint=checkpoint_name, dataset=dataset_name, step=ckpt.step, feature_cache=cache,
                checkpoint_id=ckpt.checkpoint_id, dataset_id=data.dataset_id,
                finetune_train_loader=data.train_augmented, device=device, progress=progress,
            )
        write_jsonl(records, out_dir / "results.jsonl")
    write_jsonl(records, out_dir / "results.jsonl")
    write_reports(records, out_dir, title=str(spec.get("name", "Results")), plots=plots)
    return records


def load_benchmark_file(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: benchmark file not found") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    validate_spec(spec, str(path))
    return spec


def run_benchmark_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    build_loaders: LoaderBuilder | None = None,
    load_checkpoint_fn: CheckpointLoader | None = None,
    device: str | None = None,
    progress: bool | None = None,
    plots: bool = True,
) -> list[ResultRecord]:
    """Read a YAML benchmark file and run it (:func:`run_benchmark`). ``out_dir`` defaults to the file's
    ``output:`` key, else ``runs/benchmarks/<file stem>``; a relative ``root:`` in the file is taken
    relative to the file's folder."""
    path = Path(path)
    spec = load_benchmark_file(path)
    root = Path(spec["root"]) if "root" in spec else None
    if root is not None and not root.is_absolute():
        root = path.parent / root
    out = Path(out_dir or spec.get("output") or Path("runs") / "benchmarks" / path.stem)
    return run_benchmark(spec, out, build_loaders, load_checkpoint_fn, root, device, progress, plots)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    protocol: str,
    out_dir: str | os.PathLike,
    train: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    test: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    manifest: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    dataset_name: str = "dataset",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    progress: bool | None = None,
) -> list[ResultRecord]:
    """One checkpoint (run folder, ``checkpoint.pt`` or exported ``.safetensors``), one dataset (``train`` /
    ``test`` class folders, each a path or a list of paths, or a ``manifest`` CSV), one protocol; writes the
    same files as a benchmark run. This is what ``mae-domains evaluate`` calls."""
    if manifest is None and (not train or not test):
        raise ValueError("give train= and test= folders (class_name/*.ext) or manifest=")

    def as_list(value: Any) -> list[str]:
        return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]

    dataset: dict[str, Any] = {"name": dataset_name}
    dataset.update({"manifest": str(manifest)} if manifest is not None else {"train": as_list(train), "test": as_list(test)})
    spec = {
        "name": f"{protocol} on {dataset_name}",
        "seeds": list(seeds), "batch_size": batch_size, "num_workers": num_workers,
        "checkpoints": [{"name": Path(checkpoint).stem if Path(checkpoint).is_file() else Path(checkpoint).name,
                         "path": str(Path(checkpoint).absolute())}],
        "datasets": [dataset],
        "protocols": [{"name": protocol, **dict(settings or {})}],
    }
    return run_benchmark(spec, out_dir, root=Path.cwd(), device=device, progress=progress)


__all__ = [
    "PROTOCOLS", "protocol_defaults", "resolve_settings", "run_protocol", "expand_runs", "validate_spec",
    "run_benchmark", "load_benchmark_file", "run_benchmark_file", "evaluate_checkpoint",
]
