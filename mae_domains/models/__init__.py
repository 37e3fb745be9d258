"""The MAE stack: patch embeddings onto a token grid, the ViT encoder, decoders, heads, targets and
:class:`GridMAE`, built from a run's ``model`` section by :func:`build_grid_mae`.

The plain 2D ``MaskedAutoencoder`` of the original MAE code, which the tests and benchmarks compare this
stack against, is :mod:`mae_domains.testing.reference_mae`.
"""

from mae_domains.models.presets import VIT_PRESETS, ViTPreset, get_preset
from mae_domains.models.embeddings import (
    BandGroupPatchEmbed, ChannelSharedPatchEmbed, CubePatchEmbed3D, GridEmbedding, PatchEmbed2D, TemporalPatchEmbed,
)
from mae_domains.models.grid_mae import GridEncoder, GridMAE, GridMAEOutput, build_grid_mae
from mae_domains.models.targets import PixelTarget
from mae_domains.models.patchify import patchify, unpatchify
from mae_domains.masking.indices import MaskIndices, gather_tokens, noise_from_seeds, random_masking
from mae_domains.grid.pos_embed import sincos_1d, sincos_2d, sincos_2d_with_prefix
from mae_domains.models.losses import masked_mse_loss, normalize_patches

__all__ = [
    "VIT_PRESETS", "ViTPreset", "get_preset",
    "GridEmbedding", "PatchEmbed2D", "TemporalPatchEmbed", "CubePatchEmbed3D", "BandGroupPatchEmbed",
    "ChannelSharedPatchEmbed", "GridEncoder", "GridMAE", "GridMAEOutput", "build_grid_mae", "PixelTarget",
    "patchify", "unpatchify", "MaskIndices", "gather_tokens", "noise_from_seeds", "random_masking",
    "sincos_1d", "sincos_2d", "sincos_2d_with_prefix", "masked_mse_loss", "normalize_patches",
]
