"""2D patch embeddings: one image ``(y, x)``, and stacks of 2D slices sharing one projection
(``(time, y, x)`` frames here, ``(channel, y, x)`` in :mod:`channel_shared`)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mae_domains.grid import (
    Axis, GridLayout, concat_codes, continuous_axis, expand_along_axis, fraction_width, spatial_axis,
    spatial_codes, value_codes,
)
from mae_domains.grid.axes import AxisKind
from mae_domains.models.embeddings.base import (
    GridBatch, GridEmbedding, patches_2d, project_patches, unpatches_2d,
)


def init_patch_proj(proj: nn.Module) -> None:
    """MAE init of a patch conv: xavier-uniform over the flattened kernel, zero bias."""
    w = proj.weight.data
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(proj.bias)


def position_scale(batch: GridBatch, reference_spacing: Sequence[float] | None, num_axes: int) -> torch.Tensor | None:
    """Per-sample position scale ``(B, S)`` = ``meta["spacing"] / reference_spacing`` (GSD, voxel size);
    None (unscaled integer positions, the MAE table) without a reference or without spacing metadata."""
    spacing = batch.meta.get("spacing")
    if reference_spacing is None or spacing is None:
        return None
    spacing = torch.as_tensor(spacing, dtype=torch.float64)
    if spacing.ndim == 1:
        spacing = spacing.unsqueeze(-1).expand(-1, num_axes)
    reference = torch.as_tensor(list(reference_spacing), dtype=torch.float64)
    return spacing / reference


class SlicedPatchEmbed2D(GridEmbedding):
    """Images ``(B, S, C, H, W)`` (S slices of C channels) through one shared strided-conv projection.

    With ``slice_axis=None`` the input is a plain ``(B, C, H, W)`` image and the grid is ``(y, x)``.
    Codes are the 2D sin-cos of the spatial position (scaled by ``meta["spacing"] / reference_spacing``
    when a reference is given); subclasses add slice codes in :meth:`slice_codes`.
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int = 16,
        reference_spacing: Sequence[float] | None = None,
        slice_axis: str | None = None,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.reference_spacing = None if reference_spacing is None else tuple(float(s) for s in reference_spacing)
        self.slice_axis = slice_axis
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        init_patch_proj(self.proj)
        self._code_cache: dict[tuple, torch.Tensor] = {}

    # ----- layout -----------------------------------------------------------------------------
    def as_slices(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, S, C, H, W)`` view of the input."""
        return images.unsqueeze(1) if self.slice_axis is None else images

    def slice_axis_for(self, batch: GridBatch, count: int) -> Axis:
        return continuous_axis(self.slice_axis or "slice", count)

    def layout(self, batch: GridBatch) -> GridLayout:
        x = self.as_slices(batch.images)
        h, w, p = x.shape[-2], x.shape[-1], self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}")
        spatial = (spatial_axis("y", h // p, spacing=float(p), unit="px"),
                   spatial_axis("x", w // p, spacing=float(p), unit="px"))
        if self.slice_axis is None:
            return GridLayout(spatial)
        return GridLayout((self.slice_axis_for(batch, x.shape[1]),) + spatial)

    # ----- codes ------------------------------------------------------------------------------
    def position_codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        scale = position_scale(batch, self.reference_spacing, 2)
        device = batch.images.device
        if scale is not None:
            return spatial_codes(layout, width, scale=scale.to(device), device=device)
        key = (layout.shape, width, str(device))
        if key not in self._code_cache:  # unscaled codes depend only on the grid: compute once
            self._code_cache[key] = spatial_codes(layout, width, device=device)
        return self._code_cache[key]

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        return self.position_codes(batch, layout, width)

    # ----- tokens and targets -----------------------------------------------------------------
    def project(self, batch: GridBatch, layout: GridLayout, ids: torch.Tensor | None) -> torch.Tensor:
        x = self.as_slices(batch.images)
        if x.shape[2] != self.in_chans:
            raise ValueError(f"expected {self.in_chans} channels per slice, got {x.shape[2]}")
        if ids is None:
            b, s = x.shape[:2]
            tokens = self.proj(x.flatten(0, 1))  # (B*S, D, gh, gw)
            return tokens.flatten(2).transpose(1, 2).reshape(b, -1, self.embed_dim)
        # only the requested tokens: cut patches, gather, then the conv as one matmul
        patches = patches_2d(x, self.patch_size, channel_last=False)
        index = ids.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        return project_patches(torch.gather(patches, 1, index), self.proj)

    @property
    def target_dim(self) -> int:
        return self.patch_size * self.patch_size * self.in_chans

    def target_patches(self, images: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return patches_2d(self.as_slices(images), self.patch_size)

    def unpatchify(self, patches: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        gh, gw = layout.axis("y").size, layout.axis("x").size
        slices = 1 if self.slice_axis is None else layout.axis(self.slice_axis).size
        x = unpatches_2d(patches, self.patch_size, slices, (gh, gw), self.in_chans)
        return x[:, 0] if self.slice_axis is None else x


class PatchEmbed2D(SlicedPatchEmbed2D):
    """MAE's 2D patch embedding: ``(B, C, H, W)`` -> grid ``(y, x)``, 2D sin-cos code (x first, then y,
    as the original table), optionally scaled per sample by ``meta["spacing"] / reference_spacing``
    (Scale-MAE's GSD scaling)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16,
                 reference_spacing: Sequence[float] | None = None) -> None:
        super().__init__(in_chans, embed_dim, patch_size, reference_spacing, slice_axis=None)


class TemporalPatchEmbed(SlicedPatchEmbed2D):
    """Frames ``(B, T, C, H, W)`` sharing one projection -> grid ``(time, y, x)``.

    Each frame's date ``meta["dates"]`` ``(B, T, K)`` (e.g. year, month, hour; or year, day-of-year) is
    coded with sin-cos per component. ``date_mode="concat"`` gives position ``D - w`` ++ date ``w`` with
    ``w = date_fraction * D``, or with fixed widths ``date_widths = (encoder, decoder)`` (SatMAE: 384 and
    192 at every model width; see :meth:`date_width`); ``"add"`` adds a full-width date code (Prithvi).
    Without dates the frame index is used.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 16, date_mode: str = "concat",
                 date_fraction: float = 0.25, reference_spacing: Sequence[float] | None = None,
                 date_widths: tuple[int, int] | None = None) -> None:
        super().__init__(in_chans, embed_dim, patch_size, reference_spacing, slice_axis="time")
        if date_mode not in ("concat", "add"):
            raise ValueError(f"date_mode must be 'concat' or 'add', got {date_mode!r}")
        if date_widths is not None and (len(date_widths) != 2 or any(w <= 0 or w % 2 for w in date_widths)):
            raise ValueError(f"date_widths must be two positive even widths (encoder, decoder), got {date_widths!r}")
        self.date_mode = date_mode
        self.date_fraction = date_fraction
        self.date_widths = None if date_widths is None else (int(date_widths[0]), int(date_widths[1]))
        self.channel_dim = 2

    def date_width(self, width: int) -> int:
        """Date-code width inside a code of ``width``: the fixed width of the encoder (``width ==
        embed_dim``) or of the decoder (any other width) when ``date_widths`` is set and leaves at least half
        of ``width`` to the position code, else ``date_fraction`` of ``width``."""
        if self.date_widths is not None:
            fixed = self.date_widths[0] if width == self.embed_dim else self.date_widths[1]
            if 2 * fixed <= width:
                return fixed
        return fraction_width(width, self.date_fraction)

    def slice_axis_for(self, batch: GridBatch, count: int) -> Axis:
        return Axis("time", AxisKind.CONTINUOUS, count, unit="date")

    def date_values(self, batch: GridBatch, frames: int) -> torch.Tensor:
        dates = batch.meta.get("dates")
        if dates is None:
            return torch.arange(frames, dtype=torch.float64).reshape(1, frames, 1)
        dates = torch.as_tensor(dates, dtype=torch.float64)
        if dates.shape[1] != frames:
            raise ValueError(f"meta['dates'] has {dates.shape[1]} dates for {frames} frames")
        return dates

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        device = batch.images.device
        dates = self.date_values(batch, layout.axis("time").size).to(device)
        if self.date_mode == "add":
            date = expand_along_axis(value_codes(width, dates), layout, "time")
            return self.position_codes(batch, layout, width) + date
        date_width = self.date_width(width)
        date = expand_along_axis(value_codes(date_width, dates), layout, "time")
        return concat_codes(self.position_codes(batch, layout, width - date_width), date)
