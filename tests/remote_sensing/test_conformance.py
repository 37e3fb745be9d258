"""Both remote-sensing adapters pass the plugin conformance kit, at several model presets."""

from __future__ import annotations

import pytest
import torch

from mae_domains.testing.conformance import check_adapter
from tests.remote_sensing.conftest import make_adapter


@pytest.mark.parametrize("name", ["remote_sensing.multispectral", "remote_sensing.temporal"])
def test_conformance(name):
    report = check_adapter(name)
    assert report.passed, report.render()


@pytest.mark.parametrize("preset", ["micro", "tiny", "small", "base", "large", "huge"])
@pytest.mark.parametrize("kind", ["multispectral", "temporal"])
def test_every_preset_builds_codes(kind, preset):
    """Code widths are fractions of the width: the group/date code fits every preset (ViT-Ti 192 ... 1280)."""
    from mae_domains.config import ModelConfig
    from mae_domains.models.presets import get_preset

    adapter = make_adapter(kind, img_size=32)
    width = get_preset(preset).embed_dim
    model = ModelConfig(preset=preset, img_size=32, patch_size=16, decoder_embed_dim=64, decoder_depth=1,
                        decoder_num_heads=4)
    embedding = adapter.build_embedding(model)
    sample = adapter.transform(adapter.synthetic_sample(0), 0, False, None)
    batch = {"image": torch.from_numpy(sample.image[None]), "mask_seed": [0], "meta": [sample.meta],
             "valid": torch.from_numpy(sample.valid[None])}
    grid_batch = adapter.grid_batch(batch, torch.device("cpu"))
    codes = embedding.codes(grid_batch, embedding.layout(grid_batch), width)
    assert codes.shape[-1] == width and torch.isfinite(codes).all()


def test_independent_masking_across_groups_and_time():
    for kind, axis in (("multispectral", "group"), ("temporal", "time")):
        adapter = make_adapter(kind)
        model = adapter.build_model(adapter.config.model, adapter.config.mask)
        assert model.masker.mode == "independent" and model.masker.axes == (axis,)
        from mae_domains.config import MaskConfig

        consistent = adapter.build_model(adapter.config.model, MaskConfig(strategy="consistent"))
        assert consistent.masker.mode == "consistent" and consistent.masker.axes == (axis,)
        assert adapter.build_model(adapter.config.model, MaskConfig(strategy="random")).masker.mode == "random"


def test_masking_options_moved_to_the_mask_section_say_so():
    with pytest.raises(ValueError, match="mask.strategy"):
        make_adapter("multispectral", masking="consistent")
    with pytest.raises(ValueError, match="model.decoder"):
        make_adapter("temporal", decoder="cross")


def test_the_run_config_states_one_channel_per_band():
    from mae_domains.config import load_config
    from mae_domains.registry import get_adapter

    adapter = get_adapter("remote_sensing.multispectral").bind(load_config(None, ["adapter=remote_sensing.multispectral"]))
    assert adapter.config.model.in_chans == len(adapter.bands) == 10
