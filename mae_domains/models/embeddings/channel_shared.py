"""Channel-agnostic embedding (CA-MAE, improved): every channel through one shared 1-channel patch
projection, grid ``(channel, y, x)``, and a channel code looked up by channel *name*."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mae_domains.grid import Axis, GridLayout, NamedCodeTable, NameVocabulary, expand_along_axis, nominal_axis
from mae_domains.grid import GridBatch
from mae_domains.models.embeddings.patch2d import SlicedPatchEmbed2D


def batch_channel_names(batch: GridBatch, count: int) -> tuple[str, ...]:
    """Channel names of the batch from ``meta["channel_names"]`` (one list, or one per sample; all
    samples of a batch must agree: bucket by grid signature). Missing names -> ``channel_<i>``."""
    names = batch.meta.get("channel_names")
    if names is None:
        return tuple(f"channel_{i}" for i in range(count))
    if len(names) and not isinstance(names[0], str):  # one list per sample
        first = tuple(names[0])
        if any(tuple(n) != first for n in names):
            raise ValueError("samples of one batch have different channel names; bucket batches by grid "
                             "signature (mae_domains.data.bucketing)")
        names = first
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ValueError(f"{len(names)} channel names for {count} channels")
    return names


class ChannelCodes:
    """Learned channel codes looked up by name, one table per code width (the encoder's, the decoder's),
    for embeddings with a ``channel`` axis; unknown names share the fallback row."""

    def init_channel_codes(self, channel_names: Sequence[str], channel_code: bool, code_widths: Sequence[int]) -> None:
        self.vocabulary = NameVocabulary(list(channel_names))
        self.channel_code = channel_code
        widths = sorted({self.embed_dim, *code_widths}) if channel_code else []
        self.channel_tables = nn.ModuleDict({str(w): NamedCodeTable(self.vocabulary, w) for w in widths})

    def prepare_code_width(self, width: int) -> None:
        """Add a learned channel-code table of ``width`` (the decoder's) if there is none yet."""
        if self.channel_code and str(width) not in self.channel_tables:
            self.channel_tables[str(width)] = NamedCodeTable(self.vocabulary, width).to(self.proj.weight.device)


class ChannelSharedPatchEmbed(ChannelCodes, SlicedPatchEmbed2D):
    """``(B, C, H, W)`` with any number and order of channels -> grid ``(channel, y, x)``, ``C * L`` tokens.

    Code per token = 2D sin-cos position + a learned code of the channel's name (``channel_names`` are
    the names known at construction; any other name gets the shared fallback row). Set ``channel_code``
    to False for the reference CA-MAE (no channel code: pooled features invariant to channel order).
    Learned tables exist for the widths in ``code_widths`` (the encoder width is always included; add the
    decoder width so a decoder shared by all channels knows which channel it reconstructs).
    """

    def __init__(
        self,
        embed_dim: int,
        patch_size: int = 16,
        channel_names: Sequence[str] = (),
        channel_code: bool = True,
        code_widths: Sequence[int] = (),
        reference_spacing: Sequence[float] | None = None,
    ) -> None:
        super().__init__(1, embed_dim, patch_size, reference_spacing, slice_axis="channel")
        self.init_channel_codes(channel_names, channel_code, code_widths)

    def as_slices(self, images: torch.Tensor) -> torch.Tensor:
        return images.unsqueeze(2)  # (B, C, 1, H, W): each channel is a 1-channel slice

    def slice_axis_for(self, batch: GridBatch, count: int) -> Axis:
        return nominal_axis("channel", batch_channel_names(batch, count))

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        position = self.position_codes(batch, layout, width)
        if not self.channel_code:
            return position
        if str(width) not in self.channel_tables:
            raise ValueError(f"no channel-code table of width {width}; build the embedding with "
                             f"code_widths including {width} (has {list(self.channel_tables)})")
        names = layout.axis("channel").labels
        channel = expand_along_axis(self.channel_tables[str(width)](names), layout, "channel")
        return position + channel

    def unpatchify(self, patches: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return super().unpatchify(patches, layout)[:, :, 0]  # (B, C, 1, H, W) -> (B, C, H, W)
