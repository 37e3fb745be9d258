"""ViT size presets (widths, depths, heads) as in timm / the ViT and MAE papers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViTPreset:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0


VIT_PRESETS: dict[str, ViTPreset] = {
    # "micro" is not a published size: a 2-block model for unit tests and CPU smoke runs.
    "micro": ViTPreset(embed_dim=64, depth=2, num_heads=4),
    "tiny": ViTPreset(embed_dim=192, depth=12, num_heads=3),
    "small": ViTPreset(embed_dim=384, depth=12, num_heads=6),
    "base": ViTPreset(embed_dim=768, depth=12, num_heads=12),
    "large": ViTPreset(embed_dim=1024, depth=24, num_heads=16),
    "huge": ViTPreset(embed_dim=1280, depth=32, num_heads=16),
}

PATCH_SIZES = (8, 14, 16)


def get_preset(name: str) -> ViTPreset:
    """Return the preset called ``name``; the error lists the known names."""
    try:
        return VIT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(VIT_PRESETS)}") from None
