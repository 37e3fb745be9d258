"""``remote_sensing.multispectral``: SatMAE band groups on multispectral chips (Sentinel-2 by default).

One patch projection and one prediction head per band group; grid ``(group, y, x)``; the group code is
concatenated to (default, SatMAE) or added to the 2D position code; targets are built per group from the
same band indices the projection reads, so prediction and target can never be in different band orders.

Masking (``mask.strategy``): ``independent`` (default; SatMAE's: uniform over all group x location tokens,
the kept count per group varies), ``stratified`` (an own mask per group, same kept count: what
``independent`` meant in 0.1.0) or ``consistent`` (SatMAE's ``--spatial_mask``).

Choices against SatMAE's ``models_mae_group_channels.py`` (defaults first, the faithful one settable):

- decoder CLS code (``data.options.decoder_cls_code``): ``zero`` (MAE's convention, the CLS token gets no
  code) by default; ``group`` gives it SatMAE's group code G (zero position part ++ the sin-cos code of
  index G, one past the last group), with the self-attention decoder.
- ``model.norm_pix_loss``: SatMAE's pretraining command has no ``--norm_pix_loss``, so its recipe runs
  without it (``configs/remote_sensing_multispectral_vit_base.yaml``). When on, ours normalizes each group
  token's patch over that group's own bands (the unit that is predicted); SatMAE's code, if the flag were
  set, would normalize over all bands of a location before splitting them by group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mae_domains.data.sample import Sample
from mae_domains.models.embeddings.band_groups import BandGroupPatchEmbed
from mae_remote_sensing.bands import DEFAULT_GROUPS, validate_groups, wavelength_of
from mae_remote_sensing.base import COMMON_OPTION_HELP, COMMON_OPTIONS, SATMAE_PAPER, RemoteSensingAdapter
from mae_remote_sensing.rendering import reconstruction_figure
from mae_remote_sensing.synthetic import synthetic_scene

GROUP_OPTIONS: dict[str, Any] = {
    "groups": [list(g) for g in DEFAULT_GROUPS],
    "group_names": None,
    "group_code": "concat",
    "group_fraction": 0.25,
    "decoder_group_fraction": None,  # None: group_fraction (SatMAE ViT-B: 1/3 encoder, 1/4 decoder)
    "decoder_cls_code": "zero",
}
GROUP_OPTION_HELP: dict[str, str] = {
    "groups": "band groups, one patch projection and prediction head each (SatMAE's three groups by default)",
    "group_names": "a name per group (null: the bands joined by +)",
    "group_code": "the group code concatenated to the position code (concat, SatMAE) or added at full width (add)",
    "group_fraction": "share of the encoder width given to the group code with concat",
    "decoder_group_fraction": "share of the decoder width given to the group code (null: group_fraction)",
    "decoder_cls_code": "code of the decoder's CLS token: zero (MAE) or group (SatMAE's group code G)",
}


class MultispectralAdapter(RemoteSensingAdapter):
    name = "remote_sensing.multispectral"
    summary = ("Multispectral GeoTIFF/COG, band files or Zarr (Sentinel-2 by default): SatMAE band groups, "
               "one embedding and head per group, independent masking across groups.")
    value_range = "reflectance or digital numbers as stored, each file's scale and offset applied"
    method_papers = (SATMAE_PAPER,)
    option_defaults = {**COMMON_OPTIONS, **GROUP_OPTIONS}
    option_help = {**COMMON_OPTION_HELP, **GROUP_OPTION_HELP}
    mask_axis = "group"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        opts = dict(options or {})
        self.groups = validate_groups(opts.get("groups") or GROUP_OPTIONS["groups"])
        self.default_bands = tuple(b for g in self.groups for b in g)
        super().__init__(options)
        missing = [b for g in self.groups for b in g if b not in self.bands]
        if missing:
            raise ValueError(f"adapter {self.name}: grouped bands {missing} are not among bands {list(self.bands)}")
        names = self.options["group_names"]
        if names is not None and len(names) != len(self.groups):
            raise ValueError(f"adapter {self.name}: {len(names)} group_names for {len(self.groups)} groups")
        self.group_names = tuple(names) if names else tuple("+".join(g) for g in self.groups)
        if self.options["decoder_cls_code"] not in ("zero", "group"):
            raise ValueError(f"adapter {self.name}: decoder_cls_code must be 'zero' (MAE) or 'group' (SatMAE's "
                             f"group code G), got {self.options['decoder_cls_code']!r}")

    # ----- loading -------------------------------------------------------------------------------
    def pack(self, image: np.ndarray, valid: np.ndarray, meta: dict[str, Any], label: Any) -> Sample:
        return Sample(image[0], meta, valid[0], label)

    def band_hint(self, usable: Sequence[str]) -> str:
        """Groups made of the bands the data has, e.g. ``[[B2, B3, B4], [B8A], [B11, B12]]`` for Landsat 8."""
        groups = [[b for b in g if b in usable] for g in self.groups]
        groups = [g for g in groups if g]
        if not groups:
            return super().band_hint(usable)
        return f"Use band groups it has, e.g. data.options.groups={groups}"

    # ----- model ---------------------------------------------------------------------------------
    def group_indices(self) -> list[list[int]]:
        return [[self.bands.index(b) for b in g] for g in self.groups]

    def build_embedding(self, model) -> BandGroupPatchEmbed:
        """One patch projection per band group at the preset's width."""
        o = self.options
        return BandGroupPatchEmbed(self.group_indices(), self.embed_dim(model), model.patch_size,
                                   self.group_names, code_mode=o["group_code"], group_fraction=float(o["group_fraction"]),
                                   decoder_cls_code=o["decoder_cls_code"],
                                   decoder_group_fraction=None if o["decoder_group_fraction"] is None
                                   else float(o["decoder_group_fraction"]))

    # ----- visualization -------------------------------------------------------------------------
    def render_reconstruction(self, model, batch: dict[str, Any], output, path: Path) -> Path:
        return reconstruction_figure(self, model, batch, output, path, frames=False)

    # ----- testing -------------------------------------------------------------------------------
    def synthetic_sample(self, seed: int) -> Sample:
        """A 10 m chip of fields, a river and a town with realistic reflectance per band, a nodata corner."""
        size = self.read_size
        image, valid = synthetic_scene(seed, self.bands, size, size)
        meta = {"source": f"synthetic:{seed}", "sample_id": f"synthetic-{seed}", "channel_names": list(self.bands),
                "band_names": list(self.bands), "wavelengths": [wavelength_of(b) for b in self.bands],
                "crs": "EPSG:32633", "gsd": [10.0, 10.0], "window": [0, 0, size, size],
                "chip_transform": [10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0],
                "bounds": [500000.0, 5800000.0 - 10 * size, 500000.0 + 10 * size, 5800000.0], "dates": ["2021-06-15"]}
        return Sample(image[None], meta, valid[None, None], None)
