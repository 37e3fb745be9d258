"""Convert foreign weights into a built model: find the family's converter, map, load, report."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mae_domains.conversion.registry import find_converter
from mae_domains.conversion.report import ConversionReport
from mae_domains.conversion.vit_keys import apply_converted

log = logging.getLogger(__name__)
_FAMILY_PREFIX = re.compile(r"^([a-z][a-z0-9_]+):(.+)$")


def split_family(spec: str) -> tuple[str | None, str]:
    """``"satmae_group:/ckpt/x.pth"`` -> ``("satmae_group", "/ckpt/x.pth")``; a plain path -> ``(None, path)``.
    A path that exists as written is never split (a file named ``a:b`` stays a path)."""
    spec = str(spec)
    match = _FAMILY_PREFIX.match(spec)
    if match is None or Path(spec).exists():
        return None, spec
    return match.group(1), match.group(2)


def convert_into(model: nn.Module, state: Mapping[str, torch.Tensor], adapter: Any, family: str | None = None,
                 source: str | Path = "<weights>", info: Mapping[str, Any] | None = None) -> ConversionReport:
    """Map ``state`` (a published checkpoint's tensors) into ``model`` built by ``adapter``; returns the
    report (also logged). Raises :class:`~mae_domains.weights.CheckpointFormatError` in one line when the
    weights are unknown or do not fit. ``info``: what is known beside the weights (e.g. their band names)."""
    source = str(source)
    adapter_name = str(getattr(adapter, "name", ""))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    converter = find_converter(state, adapter_name, family, source)
    report = ConversionReport(converter.family, source, adapter_name, source_info=dict(info or {}))
    converted = converter.convert(state, model, adapter, report)
    used = {s for s, _ in report.mapped} | {d for d, _ in report.dropped}
    for key in state:  # a key counts as used under its own name or without a wrapper prefix (``vit.``)
        if key not in used and key.split(".", 1)[-1] not in used:
            report.drop(key, "not used by the converter")
    apply_converted(model, converted, report, source)
    for line in report.lines():
        log.info(line)
    return report
