from __future__ import annotations

from typing import Any, Sequence

import pytest

from mae_domains.config import load_config
from mae_domains.registry import get_adapter

MICRO = ["model.preset=micro", "model.patch_size=8", "model.decoder_embed_dim=32", "model.decoder_depth=1",
         "model.decoder_num_heads=4"]


def make_adapter(name: str, img_size: int = 32, overrides: Sequence[str] = (), **options: Any):
    """An adapter bound to a micro config with chips of ``img_size`` pixels (and config ``overrides``)."""
    adapter = get_adapter(f"remote_sensing.{name}", options)
    config = load_config(None, [f"adapter=remote_sensing.{name}", f"model.img_size={img_size}"] + MICRO +
                         list(overrides), base={"data": {"options": options}})
    return adapter.bind(config)


@pytest.fixture
def adapter_factory():
    return make_adapter
