"""Masking policies over token grids (random, consistent, independent, stratified) and ColorMAE noise masks."""

from mae_domains.masking.color_noise import COLORS, ColorNoise, ColorNoiseSettings, generate_bank, load_or_create_bank
from mae_domains.masking.policies import MASK_MODES, TokenMasker, UniformNoise, build_masker, per_sample_noise

__all__ = [
    "COLORS", "ColorNoise", "ColorNoiseSettings", "generate_bank", "load_or_create_bank",
    "MASK_MODES", "TokenMasker", "UniformNoise", "build_masker", "per_sample_noise",
]
