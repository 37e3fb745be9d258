"""SatMAE band-group embedding: one patch projection per group of spectral bands, grid ``(group, y, x)``.

Targets are built per group from the same band indices the projection reads, padded to the largest
group with zero-weight slots, so the prediction for a group token and its target always list the
group's bands in the same order (the reference code predicts in group order but targets in band order).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mae_domains.grid import (
    GridLayout, concat_codes, expand_along_axis, fraction_width, index_codes, ordinal_axis, spatial_axis,
)
from mae_domains.models.embeddings.base import GridBatch, GridEmbedding, patches_2d, unpatches_2d
from mae_domains.models.embeddings.patch2d import init_patch_proj, position_scale
from mae_domains.grid.codes import spatial_codes

# Sentinel-2 groups of SatMAE by band name: visible + NIR, red edge, SWIR
SENTINEL2_GROUPS: dict[str, tuple[str, ...]] = {
    "rgb_nir": ("B2", "B3", "B4", "B8"),
    "red_edge": ("B5", "B6", "B7", "B8A"),
    "swir": ("B11", "B12"),
}


def groups_from_band_names(band_names: Sequence[str], groups: dict[str, Sequence[str]]) -> list[list[int]]:
    """Band indices of each named group in an archive whose bands are ``band_names`` (by name, never by
    position); the error names the missing band."""
    index = {name: i for i, name in enumerate(band_names)}
    out = []
    for group, names in groups.items():
        missing = [n for n in names if n not in index]
        if missing:
            raise ValueError(f"band group {group!r} needs bands {missing}, not in {list(band_names)}")
        out.append([index[n] for n in names])
    return out


class BandGroupPatchEmbed(GridEmbedding):
    """``(B, C, H, W)`` -> grid ``(group, y, x)`` with one ``Conv2d(len(group), D, p, p)`` per group.

    Code: 2D sin-cos position ++ sin-cos of the group index (``code_mode="concat"``, group width =
    ``group_fraction * D``, SatMAE's 256 of 1024) or their sum (``"add"``). ``decoder_group_fraction`` (None =
    ``group_fraction``) is the share at any other width, i.e. the decoder's: SatMAE's ViT-B codes groups
    in 256 of 768 encoder dims (1/3) but 128 of 512 decoder dims (1/4). ``decoder_cls_code="group"``
    gives the decoder's CLS token the code of group index G (zero position code ++ group code G, SatMAE's
    ``decoder_channel_embed`` row G); ``"zero"`` leaves it uncoded (MAE). The encoder's CLS gets no code
    either way (as in SatMAE).
    """

    route_axis = "group"

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        embed_dim: int,
        patch_size: int = 16,
        group_names: Sequence[str] | None = None,
        code_mode: str = "concat",
        group_fraction: float = 0.25,
        reference_spacing: Sequence[float] | None = None,
        decoder_cls_code: str = "zero",
        decoder_group_fraction: float | None = None,
    ) -> None:
        super().__init__()
        if not groups or any(len(g) == 0 for g in groups):
            raise ValueError("band groups must be non-empty lists of band indices")
        if code_mode not in ("concat", "add"):
            raise ValueError(f"code_mode must be 'concat' or 'add', got {code_mode!r}")
        if decoder_cls_code not in ("zero", "group"):
            raise ValueError(f"decoder_cls_code must be 'zero' or 'group', got {decoder_cls_code!r}")
        self.decoder_cls_code = decoder_cls_code
        self.decoder_group_fraction = group_fraction if decoder_group_fraction is None else decoder_group_fraction
        self.groups = [list(map(int, g)) for g in groups]
        self.group_names = tuple(group_names) if group_names is not None else tuple(f"group_{i}" for i in range(len(groups)))
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.code_mode = code_mode
        self.group_fraction = group_fraction
        self.reference_spacing = None if reference_spacing is None else tuple(float(s) for s in reference_spacing)
        self.num_bands = max(max(g) for g in self.groups) + 1
        self.max_group = max(len(g) for g in self.groups)
        self.projs = nn.ModuleList(nn.Conv2d(len(g), embed_dim, patch_size, patch_size) for g in self.groups)
        for proj in self.projs:
            init_patch_proj(proj)
        # (G, max_group) band index per padded slot; padding points at an extra all-zero channel
        pad = self.num_bands
        table = [g + [pad] * (self.max_group - len(g)) for g in self.groups]
        self.register_buffer("slot_bands", torch.tensor(table, dtype=torch.int64), persistent=False)
        # for each band, the padded slot it is reconstructed from (its last group; bands in no group -> pad)
        source = [len(self.groups) * self.max_group] * self.num_bands
        for gi, g in enumerate(self.groups):
            for j, band in enumerate(g):
                source[band] = gi * self.max_group + j
        self.register_buffer("band_source", torch.tensor(source, dtype=torch.int64), persistent=False)

    @property
    def num_routes(self) -> int:
        return len(self.groups)

    def layout(self, batch: GridBatch) -> GridLayout:
        h, w, p = batch.images.shape[-2], batch.images.shape[-1], self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}")
        return GridLayout((ordinal_axis("group", len(self.groups), self.group_names),
                           spatial_axis("y", h // p, float(p), "px"), spatial_axis("x", w // p, float(p), "px")))

    def codes(self, batch: GridBatch, layout: GridLayout, width: int) -> torch.Tensor:
        device = batch.images.device
        scale = position_scale(batch, self.reference_spacing, 2)
        scale = None if scale is None else scale.to(device)
        num_groups = layout.axis("group").size
        if self.code_mode == "add":
            group = expand_along_axis(index_codes(width, num_groups, device), layout, "group")
            return spatial_codes(layout, width, scale=scale, device=device) + group
        group_width = self.group_width(width)
        group = expand_along_axis(index_codes(group_width, num_groups, device), layout, "group")
        return concat_codes(spatial_codes(layout, width - group_width, scale=scale, device=device), group)

    def group_width(self, width: int) -> int:
        """Channels of the concatenated group code at ``width`` (the encoder's or another, the decoder's)."""
        fraction = self.group_fraction if width == self.embed_dim else self.decoder_group_fraction
        return fraction_width(width, fraction)

    def decoder_prefix_codes(self, width: int) -> torch.Tensor | None:
        """``(1, 1, width)`` code of the decoder's CLS token: group index G (one past the last group) with a
        zero position part, or None (``decoder_cls_code="zero"``)."""
        if self.decoder_cls_code == "zero":
            return None
        g = len(self.groups)
        if self.code_mode == "add":
            return index_codes(width, g + 1)[:, g:]
        group_width = self.group_width(width)
        group = index_codes(group_width, g + 1)[:, g:]
        return torch.cat([torch.zeros(1, 1, width - group_width), group], dim=-1)

    def check_bands(self, images: torch.Tensor) -> None:
        if images.shape[1] < self.num_bands:
            raise ValueError(f"band groups use band index {self.num_bands - 1} but the image has {images.shape[1]} bands")

    def project(self, batch: GridBatch, layout: GridLayout, ids: torch.Tensor | None) -> torch.Tensor:
        x = batch.images
        self.check_bands(x)
        tokens = [proj(x[:, g]).flatten(2).transpose(1, 2) for proj, g in zip(self.projs, self.groups)]
        tokens = torch.cat(tokens, dim=1)  # group-major, as the layout
        if ids is None:
            return tokens
        return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))

    def grouped(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, G, max_group, H, W)``: each group's bands in group order, zero-padded."""
        self.check_bands(images)
        zero = torch.zeros_like(images[:, :1])
        padded = torch.cat([images[:, : self.num_bands], zero], dim=1)
        return padded[:, self.slot_bands]

    @property
    def target_dim(self) -> int:
        return self.patch_size * self.patch_size * self.max_group

    def target_patches(self, images: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        return patches_2d(self.grouped(images), self.patch_size)

    def target_weight_count(self, layout: GridLayout, device: torch.device) -> torch.Tensor:
        sizes = torch.tensor([len(g) for g in self.groups], dtype=torch.float32, device=device)
        return (sizes * self.patch_size**2)[layout.coordinates("group", device=device)]

    def unpatchify(self, patches: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        """Per-group patches back to ``(B, num_bands, H, W)`` in band order."""
        gh, gw = layout.axis("y").size, layout.axis("x").size
        x = unpatches_2d(patches, self.patch_size, len(self.groups), (gh, gw), self.max_group)
        flat = torch.cat([x.flatten(1, 2), torch.zeros_like(x[:, 0, :1])], dim=1)
        return flat[:, self.band_source]
