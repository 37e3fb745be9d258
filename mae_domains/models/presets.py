"""ViT size presets (widths, depths, heads) as in timm / the ViT and MAE papers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ViTPreset:
    """Encoder width, depth and heads, and the decoder that goes with it by default. Small encoders get
    a smaller decoder (a 512-wide, 8-block decoder would hold most of a ViT-Ti MAE's parameters and
    compute); from ViT-B on, the MAE paper's 512 x 8 decoder with 16 heads."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16


VIT_PRESETS: dict[str, ViTPreset] = {
    # "micro" is not a published size: a 2-block model for unit tests and CPU smoke runs.
    "micro": ViTPreset(embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4),
    "tiny": ViTPreset(embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4),
    "small": ViTPreset(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
    "base": ViTPreset(embed_dim=768, depth=12, num_heads=12),
    "large": ViTPreset(embed_dim=1024, depth=24, num_heads=16),
    "huge": ViTPreset(embed_dim=1280, depth=32, num_heads=16),
}

DECODER_FIELDS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")

PATCH_SIZES = (8, 14, 16)


def get_preset(name: str) -> ViTPreset:
    """Return the preset called ``name``; the error lists the known names."""
    try:
        return VIT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(VIT_PRESETS)}") from None


def with_preset_decoder(model: Any) -> Any:
    """A copy of a ``ModelConfig`` whose unset decoder sizes (None) are the preset's."""
    preset = get_preset(model.preset)
    return dataclasses.replace(model, **{f: getattr(preset, f) for f in DECODER_FIELDS if getattr(model, f) is None})
