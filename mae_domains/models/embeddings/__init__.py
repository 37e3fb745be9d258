"""Patch embeddings that turn a batch into a token grid: 2D, temporal, 3D cubes, band groups, channels."""

from mae_domains.models.embeddings.base import GridBatch, GridEmbedding, as_grid_batch, pixel_weights
from mae_domains.models.embeddings.patch2d import PatchEmbed2D, SlicedPatchEmbed2D, TemporalPatchEmbed
from mae_domains.models.embeddings.cube3d import CubePatchEmbed3D
from mae_domains.models.embeddings.band_groups import (
    SENTINEL2_GROUPS, BandGroupPatchEmbed, groups_from_band_names,
)
from mae_domains.models.embeddings.channel_shared import ChannelSharedPatchEmbed

__all__ = [
    "GridBatch", "GridEmbedding", "as_grid_batch", "pixel_weights", "PatchEmbed2D", "SlicedPatchEmbed2D",
    "TemporalPatchEmbed", "CubePatchEmbed3D", "SENTINEL2_GROUPS", "BandGroupPatchEmbed",
    "groups_from_band_names", "ChannelSharedPatchEmbed",
]
