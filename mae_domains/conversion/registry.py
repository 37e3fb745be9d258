"""Converters of published checkpoint families, registered by name.

The core registers the original MAE family; adapter packages register theirs when imported (their
``converters`` module), so a converter can use the adapter's band or channel tables. Each converter says
which adapters it converts into (none listed: any) and how to recognize its checkpoints from key names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from mae_domains.conversion.report import ConversionReport
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


def register_converter(converter: Converter) -> Converter:
    """Add (or replace: same family and adapters) a converter."""
    _CONVERTERS[:] = [c for c in _CONVERTERS if (c.family, c.adapters) != (converter.family, converter.adapters)]
    _CONVERTERS.append(converter)
    return converter


def known_families() -> list[str]:
    return sorted({c.family for c in _CONVERTERS})


def registered_converters() -> list[Converter]:
    return list(_CONVERTERS)


def _ranked(candidates: list[Converter], adapter_name: str) -> list[Converter]:
    fitting = [c for c in candidates if c.accepts(adapter_name)]
    # adapter-specific converters before generic ones, then the most specific detector
    return sorted(fitting, key=lambda c: (not c.adapters, -c.priority))


def find_converter(state: State, adapter_name: str, family: str | None = None, source: str = "<weights>") -> Converter:
    """The converter for ``family`` (or the one whose detector recognizes ``state``) into ``adapter_name``;
    :class:`CheckpointFormatError` names the file and the choices otherwise."""
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
