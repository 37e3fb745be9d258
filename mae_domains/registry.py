"""Adapter discovery through the ``mae_domains.adapters`` entry-point group (:mod:`mae_domains.entry_point_groups`).

Built-in adapters register exactly like third-party ones. A plugin that fails to import or declares
an incompatible major API version is skipped with a warning naming it; duplicates warn.
"""

from __future__ import annotations

import functools
import glob
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from mae_domains import ADAPTER_API_VERSION
from mae_domains.entry_point_groups import ADAPTERS, load_group, warn_skipped
from mae_domains.files import walk_files


class AdapterNotFound(KeyError):
    pass


def _major(version: str) -> int:
    return int(str(version).split(".")[0])


def compatible(version: str) -> bool:
    """Whether an adapter declaring API ``version`` works with this core (same major version)."""
    try:
        return _major(version) == _major(ADAPTER_API_VERSION)
    except ValueError:
        return False


@functools.cache
def _discovered() -> dict[str, type]:
    from mae_domains.adapter_api import Adapter

    found: dict[str, type] = {}
    origins: dict[str, str] = {}
    # built-in adapters first, so a third-party plugin can never take a built-in name
    for entry in load_group(ADAPTERS):
        cls = entry.obj
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            warn_skipped(ADAPTERS, entry, "is not an Adapter subclass")
            continue
        if not compatible(cls.api_version):
            warn_skipped(ADAPTERS, entry, f"declares API version {cls.api_version!r}, incompatible with "
                                          f"{ADAPTER_API_VERSION}")
            continue
        name = cls.name or entry.name
        if name in found:
            warnings.warn(f"duplicate adapter name {name!r}: {entry.origin} ignored, keeping {origins[name]}",
                          stacklevel=2)
            continue
        found[name] = cls
        origins[name] = f"the built-in {entry.origin}" if entry.builtin else entry.origin
    return found


def discover_adapters() -> dict[str, type]:
    """``name -> adapter class`` for every loadable, compatible plugin (discovered once per process)."""
    return dict(_discovered())


def forget_discovered_plugins() -> None:
    """Discover the entry points anew on next use (after installing a plugin in a running process; tests)."""
    load_group.cache_clear()
    _discovered.cache_clear()


def get_adapter_class(name: str) -> type:
    adapters = discover_adapters()
    if name not in adapters:
        from mae_domains.config import suggest

        known = ", ".join(sorted(adapters)) or "none installed"
        raise AdapterNotFound(f"unknown adapter {name!r}{suggest(name, sorted(adapters))}; installed: {known}")
    return adapters[name]


def get_adapter(name: str, options: dict[str, Any] | None = None):
    """Instantiate the adapter registered as ``name`` with its options."""
    return get_adapter_class(name)(options)


# ----- which adapter reads a file that the chosen one does not --------------------------------------
def adapters_reading(kind: str, adapters: dict[str, type] | None = None) -> list[str]:
    """Names of installed adapters whose ``file_patterns`` name files of ``kind`` (``"DICOM"``, ``"NIfTI"``):
    a pattern such as ``*.dcm`` / ``*.nii.gz``, or a description that mentions the kind."""
    from mae_domains.data.file_kinds import KIND_PATTERNS

    adapters = discover_adapters() if adapters is None else adapters
    wanted = {p.lower() for p in KIND_PATTERNS.get(kind, ())}
    return sorted(name for name, cls in adapters.items()
                  if any(p.lower() in wanted or (not p.startswith("*") and kind.lower() in p.lower())
                         for p in getattr(cls, "file_patterns", ())))


def _candidate_files(sources: Sequence[str | os.PathLike], limit: int) -> list[Path]:
    """Up to ``limit`` files named by ``sources`` (files, folders searched recursively, globs)."""
    out: list[Path] = []
    for source in sources:
        path = Path(source)
        hits = [path] if path.exists() else [Path(p) for p in sorted(glob.glob(str(source), recursive=True))]
        for hit in hits:
            files = [hit] if hit.is_file() else (p for p in walk_files(hit) if p.is_file()) if hit.is_dir() else []
            for file in files:
                out.append(file)
                if len(out) >= limit:
                    return out
    return out


def foreign_files_hint(sources: Sequence[str | os.PathLike], adapter_name: str, limit: int = 2000) -> str:
    """A sentence per kind of file in ``sources`` that adapter ``adapter_name`` does not read (DICOM,
    NIfTI): how many, an example, and which installed adapter reads it, or that none does yet. Empty when
    there is nothing to say."""
    from mae_domains.data.file_kinds import sniff_file_kind

    found: dict[str, list[Path]] = {}
    for file in _candidate_files(sources, limit):
        kind = sniff_file_kind(file)
        if kind is not None:
            found.setdefault(kind, []).append(file)
    if not found:
        return ""
    adapters = discover_adapters()
    sentences = []
    for kind, files in found.items():
        readers = [n for n in adapters_reading(kind, adapters) if n != adapter_name]
        if not readers and adapter_name in adapters_reading(kind, adapters):
            continue  # its own kind, read by no other: the adapter says why it left these files out
        where = (f"read them with adapter {' or '.join(repr(n) for n in readers)}" if readers else
                 f"no installed adapter reads {kind} yet (installed: {', '.join(sorted(adapters)) or 'none'})")
        sentences.append(f"{len(files)} {kind} file(s) (e.g. {files[0]}) are not read by adapter "
                         f"{adapter_name!r}: {where}")
    return "; ".join(sentences)


def discover_refs(adapter: Any, sources: Sequence[str | os.PathLike]) -> list[Any]:
    """``adapter.discover(sources)``, telling the user which adapter reads the files when they are DICOM or
    NIfTI and the adapter found none it reads, or when every file given is of such a kind."""
    try:
        refs = adapter.discover(sources)
    except FileNotFoundError as err:
        hint = foreign_files_hint(sources, adapter.name)
        if hint:
            raise FileNotFoundError(f"{err}; {hint}") from None
        raise
    paths = [r for r in refs if isinstance(r, (str, os.PathLike))]
    if refs and len(paths) == len(refs):  # files given one by one are listed whatever their kind
        from mae_domains.data.file_kinds import sniff_file_kind

        kinds = {sniff_file_kind(p) for p in paths[:50]}
        if None not in kinds:
            adapters = discover_adapters()
            readable = any(adapter.name in adapters_reading(k, adapters) for k in kinds)
            if not readable and all(sniff_file_kind(p) is not None for p in paths[50:]):
                raise FileNotFoundError(f"no input files for adapter {adapter.name!r} in "
                                        f"{', '.join(map(str, sources))}; {foreign_files_hint(paths, adapter.name)}")
    return refs
