"""Helpers for the microscopy tests: an adapter bound to a micro model and small crops."""

from __future__ import annotations

from typing import Any

from mae_domains.config import load_config
from mae_domains.registry import get_adapter

NAME = "microscopy.channel_agnostic"
MICRO = ["model.preset=micro", "model.patch_size=8", "model.decoder_embed_dim=32", "model.decoder_depth=1",
         "model.decoder_num_heads=4"]


def make_adapter(img_size: int = 32, overrides: tuple[str, ...] = (), **options: Any):
    """The adapter with ``options``, bound to a micro config with ``img_size`` crops."""
    adapter = get_adapter(NAME, options)
    config = load_config(None, [f"adapter={NAME}", f"model.img_size={img_size}"] + MICRO + list(overrides),
                         base={"data": {"options": options}})
    return adapter.bind(config)
