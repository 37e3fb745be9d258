"""Model building blocks: patch embedding, positional codes, masking, encoder, decoder, MAE."""

from mae_domains.models.presets import VIT_PRESETS, ViTPreset, get_preset
from mae_domains.models.pos_embed import sincos_1d, sincos_2d, sincos_2d_with_prefix
from mae_domains.models.patchify import patchify, unpatchify
from mae_domains.models.masking import random_masking, gather_tokens, noise_from_seeds, MaskIndices
from mae_domains.models.encoder import ViTEncoder
from mae_domains.models.decoder import MAEDecoder
from mae_domains.models.losses import masked_mse_loss, normalize_patches
from mae_domains.models.mae import MaskedAutoencoder, MAEConfig, MAEOutput, build_mae

__all__ = [
    "VIT_PRESETS", "ViTPreset", "get_preset", "sincos_1d", "sincos_2d", "sincos_2d_with_prefix",
    "patchify", "unpatchify", "random_masking", "gather_tokens", "noise_from_seeds", "MaskIndices",
    "ViTEncoder", "MAEDecoder", "masked_mse_loss", "normalize_patches",
    "MaskedAutoencoder", "MAEConfig", "MAEOutput", "build_mae",
]
