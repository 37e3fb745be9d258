"""Converters of published checkpoint families, registered by name.

A converter is a :class:`Converter` object named by an entry point of the ``mae_domains.converters`` group
(loaded once per process, on first use): the core's original MAE family and the adapter packages' own (which
use the adapter's band or channel tables) are registered in mae-domains' ``pyproject.toml``, a plugin's in
its own. Each converter says which adapters it converts into (none listed: any) and how to recognize its
checkpoints from key names. :func:`register_converter` adds one in a running process (tests, notebooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from mae_domains.conversion.report import ConversionReport
from mae_domains.entry_point_groups import CONVERTERS, load_group, warn_skipped
from mae_domains.weights import CheckpointFormatError

State = Mapping[str, torch.Tensor]
ConvertFn = Callable[[State, nn.Module, Any, ConversionReport], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Converter:
    """``convert(state, model, adapter, report)`` returns weights under ``model``'s keys (adapted to its
    shapes) and records what it did in ``report``. ``priority``: more specific detectors first."""

    family: str
    summary: str
    detect: Callable[[State], bool]
    convert: ConvertFn
    adapters: tuple[str, ...] = ()
    priority: int = 0

    def accepts(self, adapter_name: str) -> bool:
        return not self.adapters or adapter_name in self.adapters


_CONVERTERS: list[Converter] = []
_LOADED_ENTRIES: set[str] = set()  # entry points already registered (or skipped with a warning)


def register_converter(converter: Converter) -> Converter:
    """Add (or replace: same family and adapters) a converter."""
    _CONVERTERS[:] = [c for c in _CONVERTERS if (c.family, c.adapters) != (converter.family, converter.adapters)]
    _CONVERTERS.append(converter)
    return converter


def _load_plugins() -> None:
    """Register the converters of the ``mae_domains.converters`` entry points, each once per process."""
    for entry in load_group(CONVERTERS):
        if entry.origin in _LOADED_ENTRIES:
            continue
        _LOADED_ENTRIES.add(entry.origin)
        if isinstance(entry.obj, Converter):
            register_converter(entry.obj)
        else:
            warn_skipped(CONVERTERS, entry, "is not a Converter")


def converters() -> list[Converter]:
    """Every registered converter (the installed plugins' included)."""
    _load_plugins()
    return list(_CONVERTERS)


def known_families() -> list[str]:
    return sorted({c.family for c in converters()})


def _ranked(candidates: list[Converter], adapter_name: str) -> list[Converter]:
    fitting = [c for c in candidates if c.accepts(adapter_name)]
    # adapter-specific converters before generic ones, then the most specific detector
    return sorted(fitting, key=lambda c: (not c.adapters, -c.priority))


def find_converter(state: State, adapter_name: str, family: str | None = None, source: str = "<weights>") -> Converter:
    """The converter for ``family`` (or the one whose detector recognizes ``state``) into ``adapter_name``;
    :class:`CheckpointFormatError` names the file and the choices otherwise."""
    _load_plugins()
    if family is not None:
        named = [c for c in _CONVERTERS if c.family == family]
        if not named:
            raise CheckpointFormatError(f"{source}: unknown checkpoint family {family!r}; known: "
                                        f"{', '.join(known_families())}")
        ranked = _ranked(named, adapter_name)
        if not ranked:
            targets = sorted({a for c in named for a in c.adapters})
            raise CheckpointFormatError(f"{source}: {family} weights convert into {', '.join(targets)}, not into "
                                        f"adapter {adapter_name}")
        return ranked[0]
    detected = [c for c in _CONVERTERS if _safe_detect(c, state)]
    ranked = _ranked(detected, adapter_name)
    if ranked:
        return ranked[0]
    if detected:
        best = max(detected, key=lambda c: c.priority)
        raise CheckpointFormatError(f"{source}: looks like {best.family} weights, which convert into "
                                    f"{', '.join(best.adapters) or 'any adapter'}, not into adapter {adapter_name}")
    sample = ", ".join(list(state)[:4])
    raise CheckpointFormatError(f"{source}: no converter recognizes these weights (keys {sample}, ...); name the "
                                f"family as FAMILY:PATH, one of {', '.join(known_families())}")


def _safe_detect(converter: Converter, state: State) -> bool:
    try:
        return bool(converter.detect(state))
    except (KeyError, IndexError, AttributeError, TypeError):
        return False
