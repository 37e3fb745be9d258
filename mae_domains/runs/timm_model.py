"""How timm rebuilds an exported 2D encoder: ``timm.create_model(**kwargs)`` for the published sizes, the
``VisionTransformer`` class's keywords for any size.

timm registers ViTs by size and patch (``vit_tiny_patch16_224``); other patch and input sizes are keyword
arguments of the same architecture, so the export names the registered base model of its width and
gives ``patch_size``, ``img_size`` and ``in_chans`` (``vit_tiny_patch8_224`` does not exist in timm).
"""

from __future__ import annotations

from typing import Any

from mae_domains.models.presets import get_preset

# The registered timm model of each preset's width, depth and heads (mlp ratio 4, qkv bias, CLS token).
TIMM_BASE_NAMES = {
    "tiny": "vit_tiny_patch16_224",
    "small": "vit_small_patch16_224",
    "base": "vit_base_patch16_224",
    "large": "vit_large_patch16_224",
    "huge": "vit_huge_patch14_224",
}


def timm_vit_kwargs(preset: str, patch_size: int, img_size: int, in_chans: int, depth: int | None = None) -> dict[str, Any]:
    """Keywords of ``timm.models.VisionTransformer`` for any preset (also ``micro``), without a head."""
    spec = get_preset(preset)
    return {"img_size": int(img_size), "patch_size": int(patch_size), "in_chans": int(in_chans),
            "embed_dim": spec.embed_dim, "depth": int(depth or spec.depth), "num_heads": spec.num_heads,
            "mlp_ratio": spec.mlp_ratio, "num_classes": 0}


def timm_create_kwargs(preset: str, patch_size: int, img_size: int, in_chans: int, depth: int | None = None,
                       pretrained_cfg: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``timm.create_model(**kwargs)`` for a published preset (None for sizes timm does not register, such
    as ``micro``): the base model name plus ``patch_size``, ``img_size``, ``in_chans``, no classifier head;
    ``depth`` only when it differs from the preset's; the run's ``pretrained_cfg`` (mean, std, input size)
    instead of the base model's ImageNet one. No ``pretrained`` key, so the standard call
    ``timm.create_model(**kwargs, pretrained=True, pretrained_cfg_overlay=dict(file=...))`` loads the weights."""
    name = TIMM_BASE_NAMES.get(preset)
    if name is None:
        return None
    kwargs: dict[str, Any] = {"model_name": name, "num_classes": 0,
                              "patch_size": int(patch_size), "img_size": int(img_size), "in_chans": int(in_chans)}
    if depth is not None and int(depth) != get_preset(preset).depth:
        kwargs["depth"] = int(depth)
    if pretrained_cfg:
        kwargs["pretrained_cfg"] = dict(pretrained_cfg)
    return kwargs
