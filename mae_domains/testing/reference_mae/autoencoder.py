"""The plain 2D Masked Autoencoder (He et al. 2021): encoder on visible tokens, light decoder,
loss on masked patches. ``model.encoder`` is a drop-in timm ``VisionTransformer`` trunk."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mae_domains.masking.indices import MaskIndices, noise_from_seeds
from mae_domains.models.losses import masked_mse_loss, normalize_patches
from mae_domains.models.patchify import patchify, unpatchify
from mae_domains.models.presets import get_preset
from mae_domains.testing.reference_mae.decoder import MAEDecoder
from mae_domains.testing.reference_mae.encoder import ViTEncoder, to_2tuple


@dataclass
class MAEConfig:
    """Architecture of a 2D MAE. ``preset`` picks the encoder width/depth/heads (tiny ... huge)."""

    preset: str = "base"
    img_size: tuple[int, int] | int = 224
    patch_size: int = 16
    in_chans: int = 3
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    norm_pix_loss: bool = False
    mask_ratio: float = 0.75
    drop_path_rate: float = 0.0

    def encoder_kwargs(self) -> dict:
        p = get_preset(self.preset)
        return dict(
            img_size=to_2tuple(self.img_size), patch_size=self.patch_size, in_chans=self.in_chans,
            embed_dim=p.embed_dim, depth=p.depth, num_heads=p.num_heads, mlp_ratio=p.mlp_ratio,
            drop_path_rate=self.drop_path_rate,
        )


@dataclass
class MAEOutput:
    loss: torch.Tensor
    pred: torch.Tensor  # (B, N, p*p*C), in normalized-target space when norm_pix_loss is on
    mask: torch.Tensor  # (B, N), 1 = removed
    masking: MaskIndices
    grid_hw: tuple[int, int]


class MaskedAutoencoder(nn.Module):
    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ViTEncoder(**config.encoder_kwargs())
        p = config.patch_size
        self.decoder = MAEDecoder(
            embed_dim=self.encoder.embed_dim,
            grid_size=self.encoder.grid_size,
            patch_dim=p * p * config.in_chans,
            decoder_embed_dim=config.decoder_embed_dim,
            decoder_depth=config.decoder_depth,
            decoder_num_heads=config.decoder_num_heads,
            mlp_ratio=get_preset(config.preset).mlp_ratio,
        )

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        return patchify(images, self.patch_size)

    def unpatchify(self, patches: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        return unpatchify(patches, self.patch_size, grid_hw, self.config.in_chans)

    def target(self, images: torch.Tensor) -> torch.Tensor:
        target = self.patchify(images.float())
        return normalize_patches(target) if self.config.norm_pix_loss else target

    def forward(
        self,
        images: torch.Tensor,
        mask_ratio: float | None = None,
        noise: torch.Tensor | None = None,
        mask_seeds: torch.Tensor | None = None,
    ) -> MAEOutput:
        """Masked forward and loss. The mask comes from ``noise`` (B, N) if given, else from one seed per
        sample (``mask_seeds``, so it is independent of batch composition), else from torch's RNG."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        if noise is None and mask_seeds is not None:
            grid = self.encoder.grid_for(images.shape[-2], images.shape[-1])
            noise = noise_from_seeds(mask_seeds, grid[0] * grid[1], device=images.device)
        latent, masking, grid_hw = self.encoder.forward_masked(images, ratio, noise=noise)
        pred = self.decoder(latent, masking.ids_restore, grid_hw)
        loss = masked_mse_loss(pred, self.target(images), masking.mask)
        return MAEOutput(loss=loss, pred=pred, mask=masking.mask, masking=masking, grid_hw=grid_hw)

    def reconstruct(self, images: torch.Tensor, output: MAEOutput) -> torch.Tensor:
        """Predictions back in image space; with ``norm_pix_loss`` each patch is de-normalized with the
        input patch's own mean and std (as the MAE visualisation does)."""
        pred = output.pred.float()
        if self.config.norm_pix_loss:
            patches = self.patchify(images.float())
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred * std + mean
        return self.unpatchify(pred, output.grid_hw)


def build_mae(preset: str = "base", **overrides) -> MaskedAutoencoder:
    """Shortcut: ``build_mae("small", patch_size=16, decoder_depth=2)``."""
    return MaskedAutoencoder(MAEConfig(preset=preset, **overrides))
