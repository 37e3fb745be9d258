"""What an exported encoder reads, stated for a user outside this tool: array layout, channel count and
names (bands and band groups), frames and dates, spacing or GSD, the adapter's options including its
defaults, and the normalization applied before the encoder.

Everything is read from the bound adapter, the built model's patch embedding and the run's statistics
(never from ``model.in_chans`` alone, which a band-group or time-series adapter does not use). An adapter
may add its own entries with an optional ``describe_input() -> dict`` method.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from mae_domains.config import RunConfig
from mae_domains.data.sample import NormStats

SPACING_KEYS = ("gsd", "target_gsd", "spacing", "target_spacing", "voxel_spacing", "pixel_size", "z_step")
log = logging.getLogger(__name__)
NORMALIZATION_TEXT = ("(x - mean) / std per channel, in the channel order below, on values as the adapter "
                      "reads them, before the encoder")


def channel_names(adapter: Any, stats: NormStats | None) -> list[str]:
    """Names of the input channels in order: the adapter's bands, the statistics' names, or none."""
    for names in (getattr(adapter, "bands", None), stats.channel_names if stats is not None else None):
        if names:
            return [str(n) for n in names]
    options = getattr(adapter, "options", {}) or {}
    for key in ("channels", "channel_names", "band_names"):
        value = options.get(key)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return list(value)
    return []


def _embedding(model: nn.Module) -> Any:
    return getattr(getattr(model, "encoder", None), "embedding", None)


def in_channels(adapter: Any, model: nn.Module, config: RunConfig, names: list[str]) -> int | None:
    """Channels per image (per frame) the encoder reads; None when it takes any number (named channels)."""
    embedding = _embedding(model)
    if embedding is not None and hasattr(embedding, "vocabulary"):
        return None  # channel-agnostic: one token set per named channel, any count
    if getattr(adapter, "bands", None):
        return len(adapter.bands)
    if embedding is not None and getattr(embedding, "num_bands", None):
        return int(embedding.num_bands)
    if embedding is not None and getattr(embedding, "in_chans", None):
        return int(embedding.in_chans)
    return int(config.model.in_chans)


def record_input_channels(config: RunConfig, adapter: Any, model: nn.Module) -> None:
    """Set ``config.model.in_chans`` to the channels per image the built model reads, so the run's
    ``config.yaml`` and checkpoint state the input as the export does (a plugin's embedding may fix its own
    count whatever ``model.in_chans`` said). Channel-agnostic models leave it as configured."""
    count = in_channels(adapter, model, config, [])
    if count is not None and count != config.model.in_chans:
        log.info("model.in_chans=%d in the config, but adapter %s's model reads %d channel(s): the run records "
                 "%d", config.model.in_chans, getattr(adapter, "name", "?"), count, count)
        config.model.in_chans = count


def array_layout(model: nn.Module) -> str:
    """The axes of one input sample, channels first."""
    embedding = _embedding(model)
    kind = type(embedding).__name__ if embedding is not None else ""
    if getattr(embedding, "slice_axis", None) == "time":
        return "(T, C, H, W): T frames of one place, oldest first"
    if hasattr(embedding, "vocabulary"):
        return "(C, H, W) or (C, D, H, W): any number of named channels" if "Cube" in kind else \
            "(C, H, W): any number of named channels"
    if "Cube" in kind:
        return "(C, D, H, W)"
    return "(C, H, W)"


def band_groups(adapter: Any) -> dict[str, list[str]] | None:
    """Band groups (one patch projection each) by group name, when the adapter has them."""
    groups = getattr(adapter, "groups", None)
    if not groups:
        return None
    names = getattr(adapter, "group_names", None) or ["+".join(g) for g in groups]
    return {str(name): [str(b) for b in group] for name, group in zip(names, groups)}


def time_input(adapter: Any, model: nn.Module) -> dict[str, Any] | None:
    """Frames and dates of a time-series encoder."""
    embedding = _embedding(model)
    if getattr(embedding, "slice_axis", None) != "time":
        return None
    options = getattr(adapter, "options", {}) or {}
    frames = options.get("frames")
    return {
        "frames": frames,
        "frames_note": "any number of frames at inference" if frames is None else
        f"pretrained on {frames} dates per sample; other counts work (date codes are continuous)",
        "dates": "one acquisition date per frame (meta 'dates', turned into numbers by the adapter), coded "
                 f"with sin-cos ({getattr(embedding, 'date_mode', '?')} with the position code, "
                 f"{date_split(embedding)}); without dates the frame index is used",
    }


def date_split(embedding: Any) -> str:
    """The date code's share of the width: fixed (encoder, decoder) widths or a fraction."""
    widths = getattr(embedding, "date_widths", None)
    if widths:
        return f"date widths {widths[0]} (encoder) and {widths[1]} (decoder)"
    return f"date fraction {getattr(embedding, 'date_fraction', '?')}"


def spacing(adapter: Any) -> dict[str, Any]:
    """Spacing / GSD settings of the adapter (None: taken from each file's metadata)."""
    options = getattr(adapter, "options", {}) or {}
    return {key: options[key] for key in SPACING_KEYS if key in options}


def input_contract(adapter: Any, model: nn.Module, config: RunConfig, stats: NormStats | None) -> dict[str, Any]:
    """The input section of an export's ``config.json`` (see the module docstring)."""
    names = channel_names(adapter, stats)
    contract: dict[str, Any] = {
        "layout": array_layout(model),
        "value_range": str(getattr(adapter, "value_range", "") or ""),
        "in_chans": in_channels(adapter, model, config, names),
        "channels": names,
        "img_size": int(config.model.img_size),
        "patch_size": int(config.model.patch_size),
    }
    groups = band_groups(adapter)
    if groups:
        contract["band_groups"] = groups
    time = time_input(adapter, model)
    if time:
        contract.update(time)
    contract["spacing"] = spacing(adapter)
    contract["adapter_options"] = dict(getattr(adapter, "options", None) or config.data.options)
    contract["normalization"] = None if stats is None else {
        "formula": NORMALIZATION_TEXT, "mean": list(stats.mean), "std": list(stats.std),
        "channels": names or None, "samples": stats.count,
    }
    describe = getattr(adapter, "describe_input", None)
    if callable(describe):
        contract.update(describe())
    return contract
