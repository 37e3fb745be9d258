"""Adapter discovery through the ``mae_domains.adapters`` entry-point group.

Built-in adapters register exactly like third-party ones. A plugin that fails to import or declares
an incompatible major API version is skipped with a warning naming it; duplicates warn.
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from typing import Any

from mae_domains import ADAPTER_API_VERSION

ENTRY_POINT_GROUP = "mae_domains.adapters"


class AdapterNotFound(KeyError):
    pass


def _major(version: str) -> int:
    return int(str(version).split(".")[0])


def discover_adapters() -> dict[str, type]:
    """``name -> adapter class`` for every loadable, compatible plugin."""
    from mae_domains.adapter_api import Adapter

    found: dict[str, type] = {}
    origins: dict[str, str] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        origin = f"{ep.name} ({ep.value})"
        try:
            cls = ep.load()
        except Exception as err:  # a broken plugin must not take the others down
            warnings.warn(f"adapter plugin {origin} failed to import and is skipped: {type(err).__name__}: {err}",
                          stacklevel=2)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            warnings.warn(f"adapter plugin {origin} is not an Adapter subclass and is skipped", stacklevel=2)
            continue
        try:
            compatible = _major(cls.api_version) == _major(ADAPTER_API_VERSION)
        except ValueError:
            compatible = False
        if not compatible:
            warnings.warn(f"adapter plugin {origin} declares API version {cls.api_version!r}, incompatible with "
                          f"{ADAPTER_API_VERSION}; skipped", stacklevel=2)
            continue
        name = cls.name or ep.name
        if name in found:
            warnings.warn(f"duplicate adapter name {name!r}: {origin} ignored, keeping {origins[name]}", stacklevel=2)
            continue
        found[name] = cls
        origins[name] = origin
    return found


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
