"""Run evaluation protocols and benchmark files, producing :class:`ResultRecord` lists and reports.

- :func:`run_protocol`: one registered protocol (built-ins ``knn``, ``linear_probe``, ``finetune``,
  ``multilabel_map``, ``anomaly``, ``segmentation``, ``scene_segmentation``; others from the ``mae_domains.protocols`` entry points) on a model and a
  pair of loaders; returns summary records (with bootstrap intervals) and per-class records.
- :func:`run_benchmark` / :func:`run_benchmark_file`: every (checkpoint x dataset x protocol) entry of a
  benchmark spec (see ``benchmarks/downstream.yaml``), writing ``results.jsonl``, ``results.csv``,
  ``results.md``, ``summary.md`` and ``plots/*.png``. Checkpoint and dataset loading are callbacks
  (defaults in :mod:`mae_domains.evaluation.loading` go through the adapter registry).
- :func:`evaluate_checkpoint`: one checkpoint, one dataset, one or more protocols (what ``mae-domains
  evaluate`` runs); a run's ``eval`` config section supplies the protocol defaults.

Settings are resolved in this order, later winning: the protocol's defaults, the adapter's
``protocol_defaults`` for it (e.g. X-ray fine-tuning: layer decay 0.55, drop path 0.2, RandAugment 6),
the run's ``eval`` section, the caller's settings; an unknown key at any level is an error.

A benchmark dataset with ``bootstrap_groups:`` (a ``path,<unit>`` CSV, :mod:`mae_domains.evaluation.
sample_groups`) gets classification intervals that resample whole groups of test samples (slices, spatial
blocks) instead of single samples (each such record's settings say ``bootstrap_groups: <unit>``); the file's
content is part of each run's identity in the run index.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import yaml
from torch import nn

# The built-in protocols register themselves on import.
import mae_domains.evaluation.anomaly  # noqa: F401
import mae_domains.evaluation.finetune  # noqa: F401
import mae_domains.evaluation.knn  # noqa: F401
import mae_domains.evaluation.linear_probe  # noqa: F401
import mae_domains.evaluation.multilabel  # noqa: F401
import mae_domains.evaluation.segmentation  # noqa: F401
import mae_domains.evaluation.volume_probe  # noqa: F401
from mae_domains.conversion import split_family
from mae_domains.evaluation.eval_defaults import RunEvalDefaults, merged_settings, run_eval_settings
from mae_domains.evaluation.features import (
    BatchEmbedFn, EmbedFn, FeatureCache, FeatureSet, cached_features, grid_embedder,
)
from mae_domains.evaluation.loading import (
    CheckpointLoader, DownstreamData, LoadedCheckpoint, LoaderBuilder, build_archive_loaders, load_checkpoint,
)
from mae_domains.evaluation.metrics import REPORT_DEFAULTS
from mae_domains.evaluation.records import (
    ResultRecord, config_hash, records_from_result, write_jsonl, write_reports,
)
from mae_domains.evaluation.run_index import RunIndex, run_key
from mae_domains.evaluation.sample_groups import SampleGroups, read_groups
from mae_domains.host_memory import retain_freed_host_memory
from mae_domains.protocols import GridBatchFn, ProtocolContext, get_protocol

log = logging.getLogger(__name__)

SPEC_KEYS = {"name", "output", "root", "seeds", "device", "batch_size", "num_workers", "progress", "cache",
             "checkpoints", "datasets", "protocols", "runs"}


def common_defaults() -> dict[str, Any]:
    """Settings every protocol takes: bootstrap resamples of the summary metrics and their confidence."""
    return dict(REPORT_DEFAULTS)


def protocol_defaults(protocol: str) -> dict[str, Any]:
    """Every setting of a registered protocol with its default value (the seed is passed separately)."""
    return {**get_protocol(protocol).defaults(), **common_defaults()}


def _check_keys(protocol: str, given: Mapping[str, Any], defaults: Mapping[str, Any], where: str = "") -> None:
    for key in given:
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"protocol {protocol}: unknown setting {key!r}{where}{hint}; "
                             f"known: {', '.join(sorted(defaults))}")


def adapter_protocol_settings(adapter: Any, protocol: str) -> dict[str, Any]:
    """The adapter's defaults for ``protocol`` (its ``protocol_defaults``; empty for none or no adapter)."""
    if adapter is None:
        return {}
    method = getattr(adapter, "protocol_settings", None)
    if method is not None:
        return dict(method(protocol))
    return dict((getattr(adapter, "protocol_defaults", None) or {}).get(protocol, {}))


def resolve_settings(protocol: str, settings: Mapping[str, Any] | None,
                     adapter_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The protocol's defaults, then ``adapter_settings`` (an adapter's ``protocol_defaults`` for it), then
    ``settings`` (the caller's, which win); unknown keys in either are errors with a suggestion."""
    defaults = protocol_defaults(protocol)
    _check_keys(protocol, adapter_settings or {}, defaults, " in the adapter's protocol_defaults")
    _check_keys(protocol, settings or {}, defaults)
    return {**defaults, **dict(adapter_settings or {}), **dict(settings or {})}


def run_protocol(
    protocol: str,
    train_loader: Iterable[Mapping[str, Any]],
    test_loader: Iterable[Mapping[str, Any]],
    *,
    encoder: nn.Module | None = None,
    embed_fn: EmbedFn | nn.Module | None = None,
    embed_batch: BatchEmbedFn | None = None,
    grid_batch: GridBatchFn | None = None,
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
    adapter_settings: Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
    model_inputs: Any = None,
    details: dict[str, Any] | None = None,
    test_groups: Any = None,
) -> list[ResultRecord]:
    """Evaluate one registered protocol and return its records (summary metrics first, then per-class values).

    Frozen features (kNN, probes) come from ``embed_batch(batch, device)``, ``embed_fn(images)`` or
    ``encoder`` (pooled with the ``pool`` setting, on ``grid_batch(batch, device)`` when given), cached in
    ``feature_cache`` under (``checkpoint_id`` or ``checkpoint``, ``dataset_id`` or ``dataset``, pool).
    Fine-tuning trains a copy of ``encoder`` (a GridEncoder) on ``finetune_train_loader`` (augmented) when
    given, else on ``train_loader``, with ``grid_batch(batch, device)`` (e.g. the adapter's) making its inputs.
    ``adapter_settings`` (the adapter's ``protocol_defaults`` for this protocol) sit between the protocol's
    defaults and ``settings``. ``model`` is the whole MAE and ``model_inputs(batch, device)`` its forward's
    arguments (anomaly scoring). ``details``, when given, receives the protocol's free-form details.
    ``test_groups(sample_ids)`` (e.g. :meth:`SampleGroups.of`) makes classification intervals resample whole
    groups of dependent test samples.
    """
    handler = get_protocol(protocol)
    resolved = resolve_settings(protocol, settings, adapter_settings)
    full_model = model
    model = embed_fn if embed_fn is not None else encoder
    pool = str(resolved.get("pool", "cls"))
    if embed_batch is None and embed_fn is None and grid_batch is not None and hasattr(encoder, "forward_grid"):
        embed_batch = grid_embedder(encoder, grid_batch, pool)  # frozen features see the metadata too
    ckpt_key, data_key = checkpoint_id or checkpoint, dataset_id or dataset
    if feature_cache is not None and not (ckpt_key and data_key):
        raise ValueError("a feature cache needs checkpoint/dataset ids (checkpoint_id=, dataset_id=)")
    loaders = {"train": train_loader, "test": test_loader}
    computed: dict[str, FeatureSet] = {}

    def features(split: str) -> FeatureSet:
        if split not in loaders:
            raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
        if model is None and embed_batch is None:
            raise ValueError(f"{protocol}: give encoder=, embed_fn= or embed_batch=")
        if split not in computed:
            computed[split] = cached_features(
                model, loaders[split], feature_cache, ckpt_key, f"{data_key}/{split}", device=device,
                pool=pool, progress=progress, embed_batch=embed_batch)
        return computed[split]

    context = ProtocolContext(
        train=train_loader, test=test_loader, settings=resolved, features=features, seed=seed, device=device,
        class_names=class_names, encoder=encoder, grid_batch=grid_batch, train_augmented=finetune_train_loader,
        progress=progress, model=full_model, model_inputs=model_inputs, test_groups=test_groups,
    )
    result = handler.run(context)
    if details is not None:
        details.update(result.details)
    records = records_from_result(result, protocol=protocol, settings=resolved, seed=seed, adapter=adapter,
                                  checkpoint=checkpoint, dataset=dataset, step=step)
    summary = ", ".join(f"{m}={v:.4f}" for m, v in result.summary.items())
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
    resume: bool = True,
) -> list[ResultRecord]:
    """Run every entry of a benchmark spec (a parsed benchmark file) and write the reports to ``out_dir``.

    ``load_checkpoint_fn(entry, root, loaded) -> LoadedCheckpoint`` and ``build_loaders(entry, checkpoint,
    options, root) -> DownstreamData`` default to the adapter-based loaders; a protocol with its own
    ``dataset_builder`` (segmentation's image/label pairs, scene / label raster pairs) reads its datasets with
    that. Relative paths resolve against
    ``root`` (argument, else the spec's ``root``, else the working directory). Linear probe and fine-tuning
    run once per seed, kNN (deterministic) once. ``results.jsonl`` is rewritten after every entry.
    ``resume``: a run already finished in ``out_dir`` with the same checkpoint, data and settings is reused,
    not run again (:mod:`mae_domains.evaluation.run_index`); ``results.jsonl`` holds the spec's runs only.
    """
    validate_spec(spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root_path = Path(root if root is not None else spec.get("root", "."))
    default_builder = build_loaders or build_archive_loaders
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

    data_memo: dict[tuple[str, str, Any], DownstreamData] = {}
    groups_memo: dict[str, tuple[SampleGroups, str]] = {}
    records: list[ResultRecord] = []
    index = RunIndex(out_dir, resume)
    done: dict[str, dict[str, Any]] = {}
    for checkpoint_name, dataset_name, protocol_name in expand_runs(spec):
        ckpt = get_checkpoint(checkpoint_name)
        protocol_entry = protocol_specs[protocol_name]
        protocol = str(protocol_entry.get("protocol", protocol_name))
        settings = {k: v for k, v in protocol_entry.items() if k not in ("name", "protocol")}
        handler = get_protocol(protocol)
        builder = handler.dataset_builder() or default_builder
        key = (checkpoint_name, dataset_name, builder)
        if key not in data_memo:
            data_memo[key] = builder(dataset_specs[dataset_name], ckpt, options, root_path)
        data = data_memo[key]
        groups, groups_id = dataset_groups(dataset_specs[dataset_name], root_path, groups_memo)
        if handler.trains_encoder and ckpt.encoder is None:
            log.warning("skipping %s for %s: it has no encoder to train", protocol, checkpoint_name)
            continue
        if handler.needs_train and data.train is None:
            raise ValueError(f"{protocol} needs a training split; dataset {dataset_name} has only a test split")
        adapter_settings = adapter_protocol_settings(ckpt.adapter, protocol)
        resolved = resolve_settings(protocol, settings, adapter_settings)
        pool = str(resolved.get("pool", "cls"))
        augmented = data.train_augmented
        if handler.trains_encoder and data.finetune_loader is not None:
            augmented = data.finetune_loader(resolved)  # the adapter's fine-tuning transform, with these settings
        for seed in seeds if handler.seeded else seeds[:1]:
            key = run_key(checkpoint_name, dataset_name, protocol_name, seed)
            identity = RunIndex.identity(protocol_name, str(ckpt.checkpoint_id),
                                         str(data.dataset_id) + groups_id, config_hash(protocol, resolved))
            finished = index.finished(key, identity)
            if finished is not None:
                log.info("%s on %s with %s (seed %d): done before, reused", protocol, dataset_name, checkpoint_name, seed)
                records += finished
                done[key] = identity
                continue
            details: dict[str, Any] = {}
            run_records = run_protocol(
                protocol, data.train, data.test,
                encoder=ckpt.encoder, embed_batch=ckpt.batch_embedder(pool),
                grid_batch=getattr(ckpt.adapter, "grid_batch", None),
                settings=settings, class_names=data.class_names, seed=seed, adapter=ckpt.adapter_name,
                checkpoint=checkpoint_name, dataset=dataset_name, step=ckpt.step, feature_cache=cache,
                checkpoint_id=ckpt.checkpoint_id, dataset_id=data.dataset_id,
                finetune_train_loader=augmented, device=device, progress=progress,
                adapter_settings=adapter_settings, model=ckpt.full_model,
                model_inputs=getattr(ckpt.adapter, "model_inputs", None), details=details,
                test_groups=groups.of if groups is not None else None,
            )
            if groups is not None and "test_predictions" in details:  # its intervals resampled these groups
                for record in run_records:
                    record.settings = {**record.settings, "bootstrap_groups": groups.unit}
            records += run_records
            run_name = f"{protocol_name}__{checkpoint_name}__{dataset_name}__seed{seed}"
            if "per_image" in details:
                write_per_image(details["per_image"], out_dir / "per_image" / f"{run_name}.csv")
            if "test_predictions" in details:
                write_test_predictions(details["test_predictions"], out_dir / "predictions" / f"{run_name}.npz")
            done[key] = identity
        write_jsonl(records, out_dir / "results.jsonl")
        index.save(done)
    write_jsonl(records, out_dir / "results.jsonl")
    index.save(done)
    write_reports(records, out_dir, title=str(spec.get("name", "Results")), plots=plots)
    return records


def dataset_groups(dataset: Mapping[str, Any], root: Path,
                   memo: dict[str, tuple[SampleGroups, str]]) -> tuple[SampleGroups | None, str]:
    """A dataset's ``bootstrap_groups`` CSV (relative to ``root``), read once, and a suffix for the run
    identity that changes with the file's content (so runs with other groups are not reused); (None, "")."""
    if not dataset.get("bootstrap_groups"):
        return None, ""
    path = Path(os.path.expanduser(str(dataset["bootstrap_groups"])))
    path = path if path.is_absolute() else root / path
    if str(path) not in memo:
        if not path.is_file():
            raise ValueError(f"dataset {dataset['name']}: bootstrap_groups {path} not found")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        memo[str(path)] = (read_groups(path), f"+groups:{digest}")
    return memo[str(path)]


def write_test_predictions(predictions: Mapping[str, Any], path: Path) -> Path:
    """A classification run's test ``labels``, ``scores`` and ``sample_ids`` when known (test-set order) as an
    ``.npz`` of plain arrays (read back with ``allow_pickle=False``), written atomically: paired comparisons
    between encoders, and bootstraps that resample groups of samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    arrays = {"labels": np.asarray(predictions["labels"]),
              "scores": np.asarray(predictions["scores"], dtype=np.float32)}
    if predictions.get("sample_ids") is not None:
        arrays["sample_ids"] = np.asarray(predictions["sample_ids"], dtype=str)
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    os.replace(partial, path)
    return path


def write_per_image(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """A protocol's per-image details (one mapping per image, e.g. sample id, source, label, score) as a CSV."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


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
    out = benchmark_output_dir(path, spec, out_dir)
    return run_benchmark(spec, out, build_loaders, load_checkpoint_fn, root, device, progress, plots)


def benchmark_output_dir(path: str | os.PathLike, spec: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> Path:
    """Where a benchmark file's results go: ``out_dir`` if given, else the file's ``output:`` key (relative
    to the working folder), else ``runs/benchmarks/<file stem>``."""
    return Path(out_dir or spec.get("output") or Path("runs") / "benchmarks" / Path(path).stem)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    protocol: str | Sequence[str] | None,
    out_dir: str | os.PathLike,
    train: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    test: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    manifest: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (0,),
    dataset_name: str = "dataset",
    batch_size: int | None = None,
    num_workers: int = 0,
    device: str = "auto",
    progress: bool | None = None,
    run_defaults: bool = True,
    adapter: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> list[ResultRecord]:
    """One checkpoint (run folder, ``checkpoint.pt`` or exported ``.safetensors``; or published weights as
    ``FAMILY:PATH`` or ``PATH`` with ``adapter`` and optionally a run ``config`` dict), one dataset (``train`` /
    ``test`` class folders or label-list CSVs, each a path or a list of paths, or a ``manifest`` CSV with a
    ``split`` column; ``test`` alone for protocols that score only it, e.g. ``anomaly``), one or more protocols;
    writes the same files as a benchmark run. This is what ``mae-domains evaluate`` calls.

    With ``run_defaults`` the ``eval`` section of the run's ``config.yaml`` gives the defaults (see
    :mod:`mae_domains.evaluation.eval_defaults`): protocol settings, under ``settings``; the batch size,
    unless ``batch_size`` is given (else 64); the protocols, when ``protocol`` is None (else ``knn``).
    Freed host memory stays in the process for the next batch, as in the trainer (:mod:`mae_domains.host_memory`).
    """
    retain_freed_host_memory()
    family, checkpoint = split_family(str(checkpoint))
    defaults = run_eval_settings(checkpoint) if run_defaults else RunEvalDefaults()
    if protocol is None:
        protocols = defaults.protocols or ["knn"]
    else:
        protocols = [protocol] if isinstance(protocol, str) else list(protocol)
    needs_train = any(get_protocol(name).needs_train for name in protocols)  # unknown names fail here
    if manifest is None and (not test or (needs_train and not train)):
        raise ValueError("give train= and test= folders (class_name/*.ext) or label lists (CSV), or manifest="
                         + ("" if needs_train else "; test= alone is enough for " + ", ".join(protocols)))

    def as_list(value: Any) -> list[str]:
        return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]

    dataset: dict[str, Any] = {"name": dataset_name}
    if manifest is not None:
        dataset["manifest"] = str(manifest)
    else:
        dataset.update({"test": as_list(test), **({"train": as_list(train)} if train else {})})
    spec = {
        "name": f"{', '.join(protocols)} on {dataset_name}",
        "seeds": list(seeds), "batch_size": batch_size or defaults.batch_size or 64, "num_workers": num_workers,
        "checkpoints": [{"name": Path(checkpoint).stem if Path(checkpoint).is_file() else Path(checkpoint).name,
                         "path": str(Path(checkpoint).absolute()),
                         **({"family": family} if family else {}), **({"adapter": adapter} if adapter else {}),
                         **({"config": dict(config)} if config else {})}],
        "datasets": [dataset],
        "protocols": [{"name": name, **values} for name, values in merged_settings(defaults, protocols, settings).items()],
    }
    if "segmentation" in protocols and (len(protocols) > 1 or manifest is None):  # image/label pairs
        raise ValueError("the segmentation protocol runs on its own, from --manifest CSV with image,label,split "
                         "columns (image/label pairs on the same grid)")
    return run_benchmark(spec, out_dir, root=Path.cwd(), device=device, progress=progress)


__all__ = [
    "common_defaults", "protocol_defaults", "resolve_settings", "run_protocol", "expand_runs", "validate_spec",
    "run_benchmark", "load_benchmark_file", "run_benchmark_file", "evaluate_checkpoint",
]
