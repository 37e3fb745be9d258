"""Input channels mapped by identity, never by position.

Weights trained on one set of channels (RGB, a band list) are loaded into a model with another by matching
each target channel to a source channel: same name first (aliases included: Sentinel-2 ``B4`` is
``red``), else the nearest centre wavelength within a relative tolerance. Index-based tiling, the usual
shortcut, puts red on blue (in an RGB -> Sentinel-2 stack ``B2, B3, B4`` are blue, green, red).
Target channels with no source are zero in the input projection (the response to the mapped channels is
unchanged; they learn during training) and are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from mae_domains.conversion.report import ConversionReport

WAVELENGTH_TOLERANCE = 0.025  # relative difference of centre wavelengths that still names the same band


@dataclass(frozen=True)
class ChannelInfo:
    """A channel's name, other names it goes by, and its centre wavelength in nm (None if unknown)."""

    name: str
    wavelength_nm: float | None = None
    aliases: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return {n.strip().lower() for n in (self.name, *self.aliases)}


# An RGB camera's channels, in the order of an RGB image: identified by colour name.
RGB_CHANNELS: tuple[ChannelInfo, ...] = (ChannelInfo("red"), ChannelInfo("green"), ChannelInfo("blue"))


def match_channels(source: Sequence[ChannelInfo], target: Sequence[ChannelInfo],
                   tolerance: float = WAVELENGTH_TOLERANCE) -> list[int | None]:
    """For each target channel, the index of the source channel that carries it, or None."""
    out: list[int | None] = []
    for channel in target:
        by_name = [i for i, s in enumerate(source) if s.names() & channel.names()]
        if by_name:
            out.append(by_name[0])
            continue
        best, best_gap = None, tolerance
        if channel.wavelength_nm:
            for i, s in enumerate(source):
                if s.wavelength_nm:
                    gap = abs(s.wavelength_nm - channel.wavelength_nm) / channel.wavelength_nm
                    if gap <= best_gap:
                        best, best_gap = i, gap
        out.append(best)
    return out


def describe_matches(source: Sequence[ChannelInfo], target: Sequence[ChannelInfo], matches: Sequence[int | None]) -> str:
    """``red -> B4, green -> B3, blue -> B2; B8, B11 zero-initialized``."""
    pairs = [f"{source[m].name} -> {t.name}" for t, m in zip(target, matches) if m is not None]
    missing = [t.name for t, m in zip(target, matches) if m is None]
    text = ", ".join(pairs) if pairs else "no channel matched"
    return text + (f"; {', '.join(missing)} zero-initialized (no source channel)" if missing else "")


def remap_input_channels(weight: torch.Tensor, matches: Sequence[int | None], dim: int = 1) -> torch.Tensor:
    """A projection's input-channel axis ``dim`` rebuilt in target order; unmatched channels are zero."""
    shape = list(weight.shape)
    shape[dim] = len(matches)
    out = weight.new_zeros(shape)
    for j, i in enumerate(matches):
        if i is not None:
            out.select(dim, j).copy_(weight.select(dim, i))
    return out


def remap_pixel_head(tensor: torch.Tensor, patch_area: int, matches: Sequence[int | None],
                     initial: torch.Tensor, channel_last: bool = True) -> torch.Tensor:
    """A pixel head's output rows (weight or bias), laid out (p, q, c) (``channel_last``) or (c, p, q) in the
    source, rebuilt as (p, q, c) in target channel order; rows of unmatched channels keep ``initial``."""
    src_chans = tensor.shape[0] // patch_area
    rows = tensor.reshape(patch_area, src_chans, *tensor.shape[1:]) if channel_last else \
        tensor.reshape(src_chans, patch_area, *tensor.shape[1:]).transpose(0, 1)
    start = initial.reshape(patch_area, len(matches), *tensor.shape[1:]).clone()
    for j, i in enumerate(matches):
        if i is not None:
            start[:, j] = rows[:, i]
    return start.reshape(patch_area * len(matches), *tensor.shape[1:])


def record_channel_mapping(report: ConversionReport, what: str, source: Sequence[ChannelInfo],
                           target: Sequence[ChannelInfo], matches: Sequence[int | None]) -> None:
    report.adapt(f"{what}: channels mapped by name/wavelength: {describe_matches(source, target, matches)}")
