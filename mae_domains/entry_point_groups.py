"""The three entry-point groups a distribution registers plugins in, each loaded once per process.

``mae_domains.adapters`` names adapter classes, ``mae_domains.protocols`` evaluation protocol classes and
``mae_domains.converters`` :class:`~mae_domains.conversion.registry.Converter` objects; the built-in ones
are registered in mae-domains' own ``pyproject.toml`` exactly as a plugin registers its own. An entry point
that fails to import (even one calling ``sys.exit``) is skipped with a warning naming it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

ADAPTERS = "mae_domains.adapters"
PROTOCOLS = "mae_domains.protocols"
CONVERTERS = "mae_domains.converters"
GROUPS = (ADAPTERS, PROTOCOLS, CONVERTERS)

BUILTIN_MODULES = ("mae_domains", "mae_image", "mae_remote_sensing", "mae_medical", "mae_microscopy")
KIND = {ADAPTERS: "adapter", PROTOCOLS: "protocol", CONVERTERS: "converter"}


@dataclass(frozen=True)
class LoadedEntryPoint:
    """An entry point's ``name``, its ``value`` (``module:attribute``), the loaded object and whether it
    ships with mae-domains."""

    name: str
    value: str
    obj: Any
    builtin: bool

    @property
    def origin(self) -> str:
        return f"{self.name} ({self.value})"


def is_builtin(ep: Any) -> bool:
    """True for what ships with mae-domains (by the top-level module the entry point names)."""
    return ep.value.split(":")[0].split(".")[0] in BUILTIN_MODULES


@functools.cache
def load_group(group: str) -> tuple[LoadedEntryPoint, ...]:
    """Every loadable entry point of ``group``, built-ins first, then by name (cached)."""
    loaded = []
    for ep in sorted(entry_points(group=group), key=lambda e: (not is_builtin(e), e.name, e.value)):
        try:
            obj = ep.load()
        except (Exception, SystemExit) as err:  # a broken plugin must not stop the others
            warnings.warn(f"{KIND.get(group, group)} plugin {ep.name} ({ep.value}) failed to import and is skipped: "
                          f"{type(err).__name__}: {err}", stacklevel=2)
            continue
        loaded.append(LoadedEntryPoint(ep.name, ep.value, obj, is_builtin(ep)))
    return tuple(loaded)


def warn_skipped(group: str, entry: LoadedEntryPoint, why: str) -> None:
    warnings.warn(f"{KIND.get(group, group)} plugin {entry.origin} {why}; skipped", stacklevel=3)
