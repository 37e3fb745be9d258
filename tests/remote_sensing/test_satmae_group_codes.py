"""SatMAE's decoder CLS code in the group model (``models_mae_group_channels.py``): the decoder's CLS token
gets ``decoder_pos_embed[:, :1]`` (zeros) ++ ``decoder_channel_embed[:, G]`` (sin-cos of index G, one past
the last group); ours leaves it uncoded unless ``decoder_cls_code: group``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_domains.config import MaskConfig
from mae_domains.models.decoding import SelfAttentionDecoder
from mae_domains.models.embeddings.band_groups import BandGroupPatchEmbed
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.test_date_presets import sincos_1d

GROUPS = [[0, 1, 2, 6], [3, 4, 5, 7], [8, 9]]


@pytest.mark.parametrize("width, group_width", [(512, 128), (32, 8)])
def test_group_code_of_the_decoder_cls_token_is_satmaes_row_g(width, group_width):
    embedding = BandGroupPatchEmbed(GROUPS, 64, 8, decoder_cls_code="group")
    expected = np.concatenate([np.zeros(width - group_width), sincos_1d(group_width, np.arange(4))[3]])
    np.testing.assert_allclose(embedding.decoder_prefix_codes(width)[0, 0].numpy(), expected, atol=1e-6)
    assert BandGroupPatchEmbed(GROUPS, 64, 8).decoder_prefix_codes(width) is None  # ours: no code (MAE)
    added = BandGroupPatchEmbed(GROUPS, 64, 8, code_mode="add", decoder_cls_code="group").decoder_prefix_codes(width)
    np.testing.assert_allclose(added[0, 0].numpy(), sincos_1d(width, np.arange(4))[3], atol=1e-6)


def test_the_adapter_option_reaches_the_decoder(monkeypatch):
    seen = []
    original = SelfAttentionDecoder.forward

    def spy(self, latent, query_ids=None, prefix_codes=None):
        seen.append(prefix_codes)
        return original(self, latent, query_ids, prefix_codes)

    monkeypatch.setattr(SelfAttentionDecoder, "forward", spy)
    outputs = []
    for choice in ("zero", "group"):
        adapter = make_adapter("multispectral", decoder_cls_code=choice)
        torch.manual_seed(0)
        model = adapter.build_model(adapter.config.model, MaskConfig(ratio=0.75, strategy="independent"))
        with torch.no_grad():
            outputs.append(model(torch.randn(1, 10, 32, 32), mask_seeds=[3]).pred)
    assert seen[0] is None
    width = model.decoder.decoder_embed_dim  # micro decoder: 32 wide, group code 8
    torch.testing.assert_close(seen[1], model.embedding.decoder_prefix_codes(width))
    assert not torch.allclose(outputs[0], outputs[1])  # the CLS code changes what the decoder sees


def test_an_unknown_choice_is_a_one_line_error():
    with pytest.raises(ValueError, match="decoder_cls_code must be 'zero' .* or 'group'"):
        make_adapter("multispectral", decoder_cls_code="G")


@pytest.mark.parametrize("width, group_width", [(768, 256), (512, 128)])
def test_vit_b_group_tables_match_satmae(width, group_width):
    """``mae_vit_base_patch16_dec512d8b``: channel_embed 256 of 768, decoder_channel_embed 128 of 512;
    each token (g, y, x) gets pos2d(D - c)[y, x] ++ sincos(c, g)."""
    from mae_domains.grid import GridBatch
    from tests.remote_sensing.test_date_presets import satmae_2d

    embedding = BandGroupPatchEmbed(GROUPS, 768, 8, group_fraction=1 / 3, decoder_group_fraction=0.25)
    batch = GridBatch(torch.zeros(1, 10, 32, 32))
    table = embedding.codes(batch, embedding.layout(batch), width)[0].double().numpy()
    pos = satmae_2d(width - group_width, 4)
    channel = sincos_1d(group_width, np.arange(3))
    expected = np.concatenate([np.concatenate([pos, np.repeat(channel[g:g + 1], 16, 0)], 1) for g in range(3)], 0)
    np.testing.assert_allclose(table, expected, atol=2e-6)
