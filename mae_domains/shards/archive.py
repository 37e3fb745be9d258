"""Prepared shards as an archive: its manifest, its sample references and a reader in the adapter's place.

A shard folder holds MosaicML Streaming MDS shards (``index.json`` and ``part-NNNNN/``, one row per
sample reference in discovery order) and ``mae_domains_shards.json``: the adapter and options it was
prepared with, and per sample its source, grid signature and label, so an archive is listed, bucketed
and labelled without reading a shard. Rows are read by global index through
``streaming.StreamingDataset`` (local folder, or an object-store URL cached under ``cache_dir``), so the
engine's own seeded samplers pick the samples: the batches, resume and skip-and-replace are those of
the raw archive, and each rank reads only the samples of its share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from mae_domains.adapter_api import Adapter
from mae_domains.data.sample import BadSampleError, NormStats, Sample
from mae_domains.shards.encoding import decode_sample, from_json

log = logging.getLogger(__name__)

MANIFEST_NAME = "mae_domains_shards.json"
FORMAT_NAME = "mae-domains prepared shards (MDS)"
FORMAT_VERSION = 1
REMOTE_SCHEMES = ("s3://", "gs://", "oci://", "azure://", "azure-dl://", "hf://", "dbfs:", "sftp://", "file://")
CACHE_ENV = "MAE_DOMAINS_SHARD_CACHE"
DOWNLOAD_TIMEOUT_S = 60


class ShardRef(NamedTuple):
    """Sample ``index`` of the prepared ``archive``; ``source`` the file it was read from."""

    index: int
    source: str
    signature: Any
    label: Any
    archive: "PreparedArchive"

    def __str__(self) -> str:
        return self.source


def is_remote(location: str) -> bool:
    """An object-store URL, or ``file://`` (a folder, e.g. on a network file system, read through the cache)."""
    return str(location).startswith(REMOTE_SCHEMES)


def is_prepared(sources: Sequence[str | os.PathLike]) -> bool:
    """One source that is a prepared shard folder (it holds the manifest) or an object-store URL."""
    if len(sources) != 1:
        return False
    location = str(sources[0])
    return is_remote(location) or (Path(location) / MANIFEST_NAME).is_file()


def hashable(value: Any) -> Any:
    """JSON lists back into tuples (grid signatures are compared and hashed)."""
    return tuple(hashable(v) for v in value) if isinstance(value, list) else value


def streaming_remote(location: str) -> str:
    """The remote as MosaicML Streaming names it: ``file://`` folders as plain paths."""
    return location[len("file://"):] if location.startswith("file://") else location


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "mae_domains_shards")


def cache_folder(url: str, manifest_text: str) -> Path:
    """The local cache of ``url`` as prepared: a preparation written to the same URL again gets a new one."""
    return cache_root() / hashlib.sha1(f"{url}\n{manifest_text}".encode()).hexdigest()[:16]


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def download(url: str, local: Path) -> None:
    """``url`` into ``local`` (replaced) with MosaicML Streaming's downloader for its scheme; a failure is a
    one-line error naming the URL."""
    from streaming.base.storage import CloudDownloader

    remote = streaming_remote(url)
    local.parent.mkdir(parents=True, exist_ok=True)
    local.unlink(missing_ok=True)
    try:
        downloader = CloudDownloader.get(remote)
        try:
            downloader.download(remote, str(local), DOWNLOAD_TIMEOUT_S)
        finally:
            downloader.clean_up()
    except Exception as err:  # botocore, gcs, sftp, OSError ...: all say the same to the user
        raise ValueError(f"{url}: cannot download ({one_line(err)})") from None


def read_manifest(location: str) -> tuple[dict[str, Any], str]:
    """The manifest of a local folder or URL and its text; a missing or unfinished one is a one-line error."""
    if is_remote(location):
        path = cache_root() / f"manifest-{os.getpid()}-{hashlib.sha1(location.encode()).hexdigest()[:12]}.json"
        download(f"{location.rstrip('/')}/{MANIFEST_NAME}", path)
        shown = f"{location.rstrip('/')}/{MANIFEST_NAME}"
    else:
        path = Path(location) / MANIFEST_NAME
        shown = str(path)
    try:
        text = Path(path).read_text()
        manifest = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{shown}: not a prepared shard manifest ({err})") from None
    finally:
        if is_remote(location):
            Path(path).unlink(missing_ok=True)
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{shown}: not a manifest of {FORMAT_NAME} version {FORMAT_VERSION}")
    if not manifest.get("complete"):
        raise ValueError(f"{location}: preparation did not finish; run the same `mae-domains prepare` again to "
                         "complete it")
    return manifest, text


# One StreamingDataset per shard location and process: it keeps shared memory named after its folder.
_OPEN: dict[str, Any] = {}


class PreparedArchive:
    """The rows of a prepared archive by global index (opened lazily in each process)."""

    def __init__(self, location: str | os.PathLike, cache: str | os.PathLike | None = None) -> None:
        """``cache``: read a local folder through this cache, as a remote (default: remotes only)."""
        self.location = str(location)
        self.manifest, text = read_manifest(self.location)
        self.cache = cache_folder(self.location, text) if is_remote(self.location) else cache
        self.refs = [ShardRef(i, s["source"], hashable(from_json(s.get("signature"))),
                              hashable(from_json(s.get("label"))), self) for i, s in enumerate(self.manifest["samples"])]

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "manifest": self.manifest, "refs": self.refs, "cache": self.cache}

    @property
    def key(self) -> str:
        return f"{self.location}\n{self.cache}"

    def close(self) -> None:
        """Forget this process's StreamingDataset of the archive (its shared memory goes with it)."""
        _OPEN.pop(self.key, None)

    def rows(self) -> Any:
        rows = _OPEN.get(self.key)
        if rows is None:
            from streaming import StreamingDataset

            try:
                if self.cache is not None:  # only index.json now; a shard when one of its samples is read
                    rows = StreamingDataset(remote=streaming_remote(self.location), local=str(self.cache),
                                            batch_size=1, download_timeout=DOWNLOAD_TIMEOUT_S)
                else:
                    rows = StreamingDataset(local=self.location, batch_size=1)
            except Exception as err:
                raise ValueError(f"{self.location}: cannot open the shards' index.json ({one_line(err)})") from None
            if rows.num_samples != len(self.refs):
                raise ValueError(f"{self.location}: the shards hold {rows.num_samples} samples, the manifest "
                                 f"{len(self.refs)}; prepare the archive again")
            _OPEN[self.key] = rows
        return rows

    def read(self, ref: ShardRef) -> Sample:
        """The Sample as the adapter's ``read`` returned it when prepared; a sample that was bad then raises
        :class:`BadSampleError` with the same source and reason."""
        if not isinstance(ref, ShardRef):
            raise TypeError(f"a prepared archive reads ShardRef objects, got {type(ref).__name__}")
        decoded = decode_sample(self.rows()[ref.index])
        if isinstance(decoded, str):
            raise BadSampleError(ref.source, decoded)
        return decoded


class PreparedReader:
    """An adapter that reads :class:`ShardRef` samples from their prepared archive (sample, grid signature and
    label as prepared) and any other reference, and everything else (transforms, model, rendering), with
    ``adapter``: training and test sets may mix shards and files."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "adapter":
            raise AttributeError(name)
        return getattr(self.adapter, name)

    def discover(self, sources: Sequence[str | os.PathLike]) -> list[Any]:
        return open_archive(self.adapter, sources)[1]

    def read(self, ref: Any) -> Sample:
        return ref.archive.read(ref) if isinstance(ref, ShardRef) else self.adapter.read(ref)

    def read_training(self, ref: Any, seed: int) -> Sample:
        return ref.archive.read(ref) if isinstance(ref, ShardRef) else self.adapter.read_training(ref, seed)

    def grid_signature(self, ref: Any) -> Any:
        return ref.signature if isinstance(ref, ShardRef) else self.adapter.grid_signature(ref)

    def label_of(self, ref: Any) -> Any:
        return ref.label if isinstance(ref, ShardRef) else self.adapter.label_of(ref)

    def compute_stats(self, refs: Sequence[Any], max_samples: int = 256, seed: int = 0) -> NormStats:
        """Those stored when the archive was prepared, when ``refs`` are all of it and the settings agree
        (nothing is read or downloaded); else computed from the samples."""
        archives = {id(r.archive): r.archive for r in refs if isinstance(r, ShardRef)}
        archive = next(iter(archives.values()), None)
        if len(archives) == 1 and all(isinstance(r, ShardRef) for r in refs) and len(refs) == len(archive.refs):
            stored = archive.manifest.get("stats") or {}
            if stored.get("max_samples") == max_samples and stored.get("seed") == seed:
                return NormStats.from_dict(from_json(stored["values"]))
        return Adapter.compute_stats(self, refs, max_samples, seed)  # type: ignore[arg-type]


def check_matches(manifest: dict[str, Any], adapter: Adapter, location: str) -> None:
    """The shards must come from this adapter; other options or image size than the run's are logged."""
    if manifest["adapter"] != adapter.name:
        raise ValueError(f"{location}: prepared with adapter {manifest['adapter']!r}, the run uses {adapter.name!r}")
    config = getattr(adapter, "config", None)
    size = getattr(getattr(config, "model", None), "img_size", None)
    differ = sorted(k for k, v in manifest["options"].items() if json.dumps(adapter.options.get(k), default=str) != json.dumps(v))
    if differ or (size is not None and manifest.get("img_size") not in (None, size)):
        log.warning("%s: prepared with other settings than this run's (%s%s); the samples are those of the "
                    "preparation", location, ", ".join(f"data.options.{k}" for k in differ),
                    f"{', ' if differ else ''}model.img_size {manifest.get('img_size')}"
                    if manifest.get("img_size") != size else "")


def open_archive(adapter: Adapter, sources: Sequence[str | os.PathLike]) -> tuple[Any, list[Any]]:
    """The reader and sample references of ``sources``: the adapter and its discovered files, or, for a
    prepared shard folder or URL, a :class:`PreparedReader` and its :class:`ShardRef` list."""
    if not is_prepared(sources):
        from mae_domains.registry import discover_refs

        return adapter, discover_refs(adapter, sources)
    archive = PreparedArchive(sources[0])
    check_matches(archive.manifest, adapter, archive.location)
    archive.rows()  # opened here, once: loader workers inherit it, and every rank opens it at the same point
    return PreparedReader(adapter), list(archive.refs)


def prepared_reader(adapter: Any, refs: Sequence[Any]) -> Any:
    """``adapter``, or a :class:`PreparedReader` around it when any of ``refs`` is a :class:`ShardRef`."""
    if isinstance(adapter, PreparedReader) or not any(isinstance(r, ShardRef) for r in refs):
        return adapter
    return PreparedReader(adapter)


def shard_groups(refs: Sequence[Any], count: int) -> list[int] | None:
    """The group of every sample when the prepared shards are split into ``count`` groups of consecutive
    shards (as many shards each as can be), or None for one group. Only shards hold groups."""
    if count == 1:
        return None
    archives = {id(r.archive): r.archive for r in refs if isinstance(r, ShardRef)}
    if count < 1 or len(archives) != 1 or not all(isinstance(r, ShardRef) for r in refs):
        raise ValueError(f"data.shard_groups={count}: groups split the shards of one prepared archive (and need at "
                         "least 1); for source files set data.shard_groups=1")
    archive = next(iter(archives.values()))
    sizes = [int(shard.samples) for shard in archive.rows().shards]
    if count > len(sizes):
        raise ValueError(f"data.shard_groups={count}: {archive.location} holds {len(sizes)} shard file(s); prepare it "
                         "with a smaller --part-size, or use fewer groups")
    group_of = [k * count // len(sizes) for k, size in enumerate(sizes) for _ in range(size)]
    return [group_of[r.index] for r in refs]
