"""Decode an archive once into MDS shards (``mae-domains prepare``): in parallel, resumable.

The sample references (``adapter.discover``) are cut into parts of ``part_size`` consecutive samples;
each part is written by one worker process into ``part-NNNNN/`` with ``streaming.MDSWriter`` and marked
done by a ``done.json`` holding its samples' records (source, grid signature, label). A run that is
interrupted keeps its finished parts: the same command again writes only the missing ones (a part's
unfinished files are removed first), then merges the parts' indexes into ``index.json`` in order and
writes the manifest (:mod:`mae_domains.shards.archive`) last. A sample that cannot be read is stored as
bad with its reason, so training from the shards skips and replaces it as it would from the files.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mae_domains.adapter_api import Adapter
from mae_domains.data.sample import BadSampleError
from mae_domains.shards.archive import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, is_remote
from mae_domains.shards.encoding import COLUMNS, encode_bad, encode_sample, to_json
from mae_domains.shards.storage import Storage, at_resolution

log = logging.getLogger(__name__)

DONE_NAME = "done.json"
SETTINGS_NAME = "prepare_settings.json"
COMPRESSIONS = ("zstd", "none")


@dataclass
class PrepareSummary:
    samples: int
    bad: int
    parts_written: int
    parts_kept: int
    decoded_bytes: int  # the arrays as ``read`` returned them
    shard_bytes: int
    compression: str
    seconds: float


def part_name(k: int) -> str:
    return f"part-{k:05d}"


def _settings(config: Any, compression: str, part_size: int, storage: Storage) -> dict[str, Any]:
    return {"adapter": config.adapter, "options": to_json(dict(config.data.options)), "sources":
            [str(s) for s in config.data.sources], "img_size": config.model.img_size, "seed": config.engine.seed,
            "compression": compression, "part_size": part_size,
            **({} if storage == Storage() else {"dtype": storage.dtype, "resolution": storage.resolution})}


# ----- one part, in a worker process -----------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(config: Any) -> None:
    import torch

    from mae_domains.registry import discover_refs, get_adapter

    torch.set_num_threads(1)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    _WORKER.update(adapter=adapter, refs=discover_refs(adapter, config.data.sources))


def _write_part(task: tuple[str, int, int, int, str, Storage]) -> tuple[int, int, int]:
    """Write samples ``[start, stop)`` into part ``k``; returns (k, samples, decoded bytes). A sample that
    does not fit the chosen dtype stops the preparation (a setting, not a bad file)."""
    from streaming import MDSWriter

    out, k, start, stop, compression, storage = task
    adapter, refs = _WORKER["adapter"], _WORKER["refs"]
    folder = Path(out) / part_name(k)
    shutil.rmtree(folder, ignore_errors=True)
    records, decoded = [], 0
    with MDSWriter(out=str(folder), columns=COLUMNS, compression=None if compression == "none" else compression,
                   size_limit="128mb", progress_bar=False) as writer:
        for ref in refs[start:stop]:
            record: dict[str, Any] = {"source": str(getattr(ref, "source", ref))}
            try:
                sample = adapter.read(ref)
                sample.check_finite()
                decoded += sample.image.nbytes + (0 if sample.valid is None else sample.valid.nbytes)
            except Exception as err:  # stored as bad: training skips and replaces it, as from the files
                reason = err.reason if isinstance(err, BadSampleError) else f"unreadable ({type(err).__name__}: {err})"
                record["source"] = err.source if isinstance(err, BadSampleError) else record["source"]
                record["bad"] = reason
                row = encode_bad(reason)
            else:
                if storage.resolution is not None:
                    sample = at_resolution(sample, storage.resolution)
                row = encode_sample(sample, storage.dtype)
            record["signature"] = to_json(adapter.grid_signature(ref))
            label = adapter.label_of(ref)
            record["label"] = label if label is None or isinstance(label, (str, int, float)) else to_json(label)
            writer.write(row)
            records.append(record)
    (folder / DONE_NAME).write_text(json.dumps({"samples": records, "decoded_bytes": decoded}))
    return k, len(records), decoded


# ----- the whole archive -----------------------------------------------------------------------------
def prepare_archive(config: Any, out: str | os.PathLike, *, workers: int | None = None, part_size: int = 256,
                    compression: str = "zstd", progress: bool = True, dtype: str = "as-read",
                    resolution: int | None = None) -> PrepareSummary:
    """Prepare the archive of ``config`` (adapter, ``data.sources``, options, ``model.img_size``) into the
    shard folder ``out``, pixels stored as ``dtype`` and, for adapters that resize whole images, with the
    shorter side at most ``resolution`` (:mod:`mae_domains.shards.storage`); resumes a folder prepared with
    the same settings, refuses one of others."""
    from mae_domains.registry import discover_refs, get_adapter

    if is_remote(str(out)):
        raise ValueError(f"{out}: prepare writes a local folder; copy it to object storage afterwards "
                         "(e.g. `aws s3 sync`), then train with --data URL")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}: choose one of {', '.join(COMPRESSIONS)}")
    started = time.perf_counter()
    out = Path(out)
    storage = Storage(dtype, resolution)
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    storage.check(adapter)
    settings = _settings(config, compression, part_size, storage)
    settings_file = out / SETTINGS_NAME
    if out.exists() and any(out.iterdir()):
        if not settings_file.is_file():
            raise ValueError(f"{out}: exists and is not a shard folder of `mae-domains prepare`; choose a new --out")
        previous = json.loads(settings_file.read_text())
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ValueError(f"{out}: prepared with other settings ({', '.join(changed)}); choose a new --out or "
                             "remove the folder")
    out.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(settings, indent=1))
    refs = discover_refs(adapter, config.data.sources)
    if type(adapter).read_training is not Adapter.read_training:
        log.warning("%s draws a new window for every epoch when it reads for training; the shards hold the sample "
                    "its read() returns (one fixed window per reference), so training from them sees that window "
                    "every epoch (remote sensing: data.options.sampling=grid stores every window of a scene)",
                    adapter.name)
    spans = [(k, start, min(start + part_size, len(refs))) for k, start in enumerate(range(0, len(refs), part_size))]
    todo = [(str(out), k, a, b, compression, storage) for k, a, b in spans if not (out / part_name(k) / DONE_NAME).is_file()]
    kept = len(spans) - len(todo)
    if kept:
        log.info("%s: %d of %d part(s) already prepared, kept", out, kept, len(spans))
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(todo) or 1))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(refs), initial=sum(b - a for k, a, b in spans if not any(t[1] == k for t in todo)),
                   unit="sample", desc=f"prepare {config.adapter}")
    if todo:
        if workers == 1:
            _init_worker(config)
            results = map(_write_part, todo)
        else:
            # fork, as the DataLoader's workers (spawn would import torch again in each: seconds per worker)
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = multiprocessing.get_context(context).Pool(workers, _init_worker, (config,))
            results = pool.imap_unordered(_write_part, todo)
        try:
            for _, count, _ in results:
                if bar is not None:
                    bar.update(count)
        finally:
            if workers > 1:
                pool.close()
                pool.join()
    if bar is not None:
        bar.close()
    summary = finish(out, spans, settings, compression, kept, len(todo), started)
    store_stats(out, adapter, config.data.stats_samples, config.engine.seed)
    return summary


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (out / (MANIFEST_NAME + ".tmp")).write_text(json.dumps(manifest))
    os.replace(out / (MANIFEST_NAME + ".tmp"), out / MANIFEST_NAME)


def store_stats(out: Path, adapter: Adapter, max_samples: int, seed: int) -> None:
    """The normalization statistics a run with ``data.stats_samples`` and ``engine.seed`` computes from
    these shards, into the manifest: a run from object storage then starts without reading samples (a
    rank would download shards outside its share for them). Read through a temporary cache: the shard
    folder keeps only its compressed shards."""
    import tempfile

    from mae_domains.shards.archive import PreparedArchive, PreparedReader

    with tempfile.TemporaryDirectory(prefix="mae_domains_stats_") as cache:
        archive = PreparedArchive(out, cache=cache)
        try:
            stats = PreparedReader(adapter).compute_stats(archive.refs, max_samples, seed)
        finally:
            archive.close()
    write_manifest(out, {**archive.manifest, "stats": {"max_samples": max_samples, "seed": seed,
                                                       "values": to_json(stats.as_dict())}})


def finish(out: Path, spans: list[tuple[int, int, int]], settings: dict[str, Any], compression: str, kept: int,
           written: int, started: float) -> PrepareSummary:
    """Merge the parts' indexes in order and write the manifest, last."""
    from streaming.base.util import merge_index

    records, decoded = [], 0
    for k, _, _ in spans:
        done = json.loads((out / part_name(k) / DONE_NAME).read_text())
        records.extend(done["samples"])
        decoded += int(done["decoded_bytes"])
    (out / "index.json").unlink(missing_ok=True)  # an earlier run's merge
    logging.disable(logging.WARNING)  # merge_index warns that the folder exists and about its temp folder
    try:
        merge_index([str(out / part_name(k) / "index.json") for k, _, _ in spans], str(out), keep_local=True)
    finally:
        logging.disable(logging.NOTSET)
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **settings, "decoded_bytes": decoded,
                "samples": records, "complete": True}
    write_manifest(out, manifest)
    shard_bytes = sum(p.stat().st_size for p in out.rglob("*.mds*"))
    bad = sum(1 for r in records if "bad" in r)
    if records and bad == len(records):
        first = records[0]
        raise ValueError(f"none of the {bad} samples of {', '.join(settings['sources'])} could be read (first: "
                         f"{first['source']}: {first['bad']}); the shards in {out} hold only bad samples")
    return PrepareSummary(len(records), bad, written, kept, decoded, shard_bytes, compression,
                          time.perf_counter() - started)
