"""Installed adapters listed without importing them: name, API version and summary are read from the
adapter class's source, as setuptools reads a static ``attr:`` version. Importing an adapter package
loads torch and its readers (seconds to tens of seconds); reading its source takes milliseconds.

A class whose ``summary`` is not a literal in its body (inherited, computed) is imported instead, with
the warnings of :func:`mae_domains.registry.discover_adapters`.
"""

from __future__ import annotations

import ast
import importlib.util
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from mae_domains import ADAPTER_API_VERSION
from mae_domains.entry_point_groups import ADAPTERS as ENTRY_POINT_GROUP, is_builtin
from mae_domains.registry import compatible


@dataclass(frozen=True)
class AdapterEntry:
    """One installed adapter as the listing shows it."""

    name: str
    api_version: str
    summary: str
    target: str  # the entry point's ``module:Class``


def module_source(module: str) -> Path | None:
    """The source file of ``module`` found without running any package's ``__init__``: the top-level
    package is located by its spec (which does not execute it), the rest by the usual file layout."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    for folder in spec.submodule_search_locations or ():
        base = Path(folder).joinpath(*rest)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def class_literals(source: Path, class_name: str) -> dict[str, object] | None:
    """The literal values assigned to names in the body of ``class_name`` in ``source`` (None: no such
    class, or the file does not parse)."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            found: dict[str, object] = {}
            for item in node.body:
                targets = (item.targets if isinstance(item, ast.Assign) else
                           [item.target] if isinstance(item, ast.AnnAssign) and item.value is not None else [])
                for target in targets:
                    if isinstance(target, ast.Name):
                        try:
                            found[target.id] = ast.literal_eval(item.value)
                        except ValueError:  # not a literal: computed at import
                            pass
            return found
    return None


def static_entry(ep) -> AdapterEntry | None:
    """The adapter an entry point names, read from source; None when that is not possible."""
    module, _, attr = ep.value.partition(":")
    source = module_source(module.strip())
    literals = class_literals(source, attr.strip()) if source and attr and "." not in attr else None
    if not literals or not isinstance(literals.get("summary"), str):
        return None
    version = str(literals.get("api_version", ADAPTER_API_VERSION))
    if not compatible(version):
        warnings.warn(f"adapter plugin {ep.name} ({ep.value}) declares API version {version!r}, incompatible "
                      f"with {ADAPTER_API_VERSION}; skipped", stacklevel=2)
        return None
    return AdapterEntry(str(literals.get("name") or ep.name), version, literals["summary"], ep.value)


def list_adapters() -> list[AdapterEntry]:
    """Every installed adapter, by name; built-in adapters win over third-party ones of the same name. An
    adapter that cannot be read from source is imported (a broken one is left out with a warning)."""
    entries: dict[str, AdapterEntry] = {}
    imported = None
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (not is_builtin(e), e.name, e.value)):
        entry = static_entry(ep)
        if entry is None:
            if imported is None:
                from mae_domains.registry import discover_adapters

                imported = {cls_name: cls for cls_name, cls in discover_adapters().items()}
            cls = next((c for c in imported.values() if f"{c.__module__}:{c.__qualname__}" == ep.value), None)
            if cls is None:
                continue
            entry = AdapterEntry(cls.name or ep.name, str(cls.api_version), cls.summary, ep.value)
        entries.setdefault(entry.name, entry)
    return [entries[name] for name in sorted(entries)]


def load_adapter_class(name: str) -> type:
    """The class of adapter ``name``, importing only its own package (not every installed adapter)."""
    from mae_domains.registry import AdapterNotFound, get_adapter_class

    entry = next((e for e in list_adapters() if e.name == name), None)
    if entry is None:
        from mae_domains.config import suggest

        known = [e.name for e in list_adapters()]
        raise AdapterNotFound(f"unknown adapter {name!r}{suggest(name, known)}; installed: "
                              f"{', '.join(known) or 'none'}")
    ep = next(e for e in entry_points(group=ENTRY_POINT_GROUP) if e.value == entry.target)
    try:
        cls = ep.load()
    except (Exception, SystemExit):  # the registry reports why, the same way as for every command
        return get_adapter_class(name)
    return cls if getattr(cls, "name", None) == name else get_adapter_class(name)
