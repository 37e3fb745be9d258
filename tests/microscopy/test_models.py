"""The channel-agnostic model: permutation invariance with names, any channel count, masking modes across
channels, the per-patch Fourier term, volumes, and every preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_domains.config import MaskConfig, ModelConfig
from mae_domains.models.fourier_loss import FourierGridMAE, fourier_patch_loss, patch_fft_magnitude
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import PAINTING, write_cells_ome, write_ome_tiff

CPU = torch.device("cpu")


def as_batch(samples):
    return {"image": torch.stack([torch.from_numpy(s.image) for s in samples]),
            "valid": torch.stack([torch.from_numpy(s.valid) for s in samples]),
            "meta": [s.meta for s in samples], "mask_seed": list(range(len(samples)))}


def crops(adapter, path):
    """Every grid crop of a file, read and normalized with evaluation transforms."""
    return [adapter.transform(adapter.read(r), 0, False, None) for r in adapter.discover([path])]


def pretrained(adapter, steps: int = 3):
    """A micro model after a few AdamW steps on 5-channel synthetic crops."""
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    samples = [adapter.transform(adapter.synthetic_sample(s), s, True, None) for s in range(4)]
    for _ in range(steps):
        loss = model(**adapter.model_inputs(as_batch(samples), CPU)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_permuting_channels_with_their_names_leaves_the_embedding_unchanged(tmp_path):
    adapter = make_adapter(32, sampling="grid")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = write_cells_ome(tmp_path / "a" / "f.ome.tif", PAINTING, 3)
    perm = [3, 0, 4, 1, 2]
    write_ome_tiff(tmp_path / "b" / "f.ome.tif", data[perm], [PAINTING[i] for i in perm])
    model = pretrained(adapter)
    a, b = as_batch(crops(adapter, tmp_path / "a")), as_batch(crops(adapter, tmp_path / "b"))
    assert b["meta"][0]["channel_names"] == ["AGP", "DNA", "Mito", "RNA", "ER"]
    np.testing.assert_allclose(b["image"].numpy(), a["image"][:, perm].numpy())
    with torch.no_grad():
        for pool in ("cls", "avg"):
            ea, eb = adapter.embed(model, a, CPU, pool), adapter.embed(model, b, CPU, pool)
            torch.testing.assert_close(ea, eb, atol=1e-5, rtol=1e-5)
        # the same pixels under the original names are different channels: a different embedding
        wrong = dict(b, meta=a["meta"])
        assert (adapter.embed(model, wrong, CPU, "cls") - adapter.embed(model, a, CPU, "cls")).abs().max() > 1e-3


def test_a_model_pretrained_on_5_channels_embeds_3_and_8(tmp_path):
    adapter = make_adapter(32, sampling="grid")
    model = pretrained(adapter)
    for names in (["DNA", "ER", "Mito"], list(PAINTING) + ["Brightfield", "Actin", "Tubulin"]):
        folder = tmp_path / str(len(names))
        folder.mkdir()
        write_cells_ome(folder / "f.ome.tif", names, 1)
        batch = as_batch(crops(adapter, folder))
        assert batch["image"].shape[1] == len(names)
        with torch.no_grad():
            emb = adapter.embed(model, batch, CPU, "cls")
            out = model(**adapter.model_inputs(batch, CPU))
        assert emb.shape == (4, 64) and torch.isfinite(emb).all()
        assert out.layout.axis("channel").labels == tuple(names) and torch.isfinite(out.loss)
        assert out.pred.shape[1] == out.mask.sum(1)[0] and out.mask.shape[1] == len(names) * 16


def test_unknown_names_share_the_fallback_code():
    adapter = make_adapter(32)
    embedding = adapter.build_embedding(adapter.config.model)
    table = embedding.channel_tables["64"]
    rows = table.vocabulary.rows(["DNA", "Actin", "Tubulin"])
    assert rows[0] > 0 and rows[1] == rows[2] == 0
    torch.testing.assert_close(table(["Actin"]), table(["Tubulin"]))


@pytest.mark.parametrize("strategy", ["random", "consistent", "independent", "stratified"])
def test_masking_across_channels(strategy):
    adapter = make_adapter(32)
    model = adapter.build_model(adapter.config.model, MaskConfig(ratio=0.75, strategy=strategy))
    sample = adapter.transform(adapter.synthetic_sample(0), 0, False, None)
    batch = as_batch([sample, sample])
    with torch.no_grad():
        mask = model(**adapter.model_inputs(batch, CPU)).mask.reshape(2, 5, 16)
    kept = (mask == 0).sum(-1)
    if strategy == "consistent":  # one spatial mask for every channel
        assert (mask == mask[:, :1]).all() and (kept == 4).all()
    elif strategy == "stratified":  # own mask per channel, same kept count
        assert (kept == 4).all() and not (mask == mask[:, :1]).all()
    else:  # random (CA-MAE) and independent (SatMAE): uniform over all C x L tokens, count per channel varies
        assert kept.sum(-1).tolist() == [20, 20] and len(set(kept.flatten().tolist())) > 1


def direct_fourier(pred, target, token_weight, shape):
    """The Fourier term token by token with torch.fft.fftn on each patch image."""
    total, count = 0.0, 0.0
    for b in range(pred.shape[0]):
        for n in range(pred.shape[1]):
            if token_weight[b, n] == 0:
                continue
            p = torch.fft.fftn(pred[b, n].reshape(*shape)).abs()
            t = torch.fft.fftn(target[b, n].reshape(*shape)).abs()
            total += float((p - t).abs().mean()) * float(token_weight[b, n])
            count += float(token_weight[b, n])
    return total / count


@pytest.mark.parametrize("shape", [(4, 4), (6, 6), (16, 16), (5, 7), (2, 4, 4)])
def test_fourier_term_per_patch_for_any_patch_size(shape):
    gen = torch.Generator().manual_seed(0)
    size = int(np.prod(shape))
    pred, target = torch.randn(2, 9, size, generator=gen), torch.randn(2, 9, size, generator=gen)
    token_weight = (torch.rand(2, 9, generator=gen) > 0.4).float()
    weight = torch.ones_like(pred)
    got = fourier_patch_loss(pred, target, weight, token_weight, shape, 1)
    assert got.item() == pytest.approx(direct_fourier(pred, target, token_weight, shape), rel=1e-5)
    assert fourier_patch_loss(target, target, weight, token_weight, shape, 1).item() == pytest.approx(0.0, abs=1e-6)
    # a patch's magnitudes do not change when its content is shifted circularly
    img = target[0, 0].reshape(*shape)
    shifted = torch.roll(img, shifts=1, dims=-1).reshape(1, 1, -1)
    torch.testing.assert_close(patch_fft_magnitude(shifted, shape, 1), patch_fft_magnitude(img.reshape(1, 1, -1), shape, 1),
                               atol=1e-4, rtol=1e-4)


def test_fourier_loss_mixes_into_the_model_loss():
    plain = make_adapter(32)
    mixed = make_adapter(32, fourier_weight=0.01)
    torch.manual_seed(0)
    base = plain.build_model(plain.config.model, plain.config.mask)
    model = mixed.build_model(mixed.config.model, mixed.config.mask)
    assert isinstance(model, FourierGridMAE) and model.patch_shape == (8, 8)
    model.load_state_dict(base.state_dict())  # same keys, same weights
    batch = as_batch([mixed.transform(mixed.synthetic_sample(s), s, True, None) for s in range(2)])
    with torch.no_grad():
        ref = base(**plain.model_inputs(batch, CPU))
        out = model(**mixed.model_inputs(batch, CPU))
    fourier = direct_fourier(ref.pred, ref.target, ref.token_weight, (8, 8))
    assert out.loss.item() == pytest.approx(0.99 * ref.loss.item() + 0.01 * fourier, rel=1e-5)
    assert model.last_terms["fourier"].item() == pytest.approx(fourier, rel=1e-5)


def test_volume_mode_grid_channel_z_y_x(tmp_path):
    adapter = make_adapter(32, z_mode="volume", crop_depth=4, patch_depth=2, fourier_weight=0.01)
    write_cells_ome(tmp_path / "stack.ome.tif", ["DNA", "ER"], 0, size=32, planes=6)
    sample = adapter.transform(adapter.read(adapter.discover([tmp_path / "stack.ome.tif"])[0]), 0, True, None)
    assert sample.image.shape == (2, 4, 32, 32) and sample.valid.shape == (4, 32, 32)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    out = model(**adapter.model_inputs(as_batch([sample, sample]), CPU))
    assert out.layout.names == ("channel", "z", "y", "x") and out.layout.shape == (2, 2, 4, 4)
    assert model.patch_shape == (2, 8, 8) and torch.isfinite(out.loss)
    out.loss.backward()
    emb = model.embedding
    patches = emb.target_patches(torch.from_numpy(sample.image[None]), out.layout)
    torch.testing.assert_close(emb.unpatchify(patches, out.layout), torch.from_numpy(sample.image[None]))


@pytest.mark.parametrize("preset", ["micro", "tiny", "small", "base", "large", "huge"])
def test_every_preset_builds_codes(preset):
    adapter = make_adapter(32)
    from mae_domains.models.presets import get_preset

    width = get_preset(preset).embed_dim
    model = ModelConfig(preset=preset, img_size=32, patch_size=16, decoder_embed_dim=512)
    embedding = adapter.build_embedding(model)
    sample = adapter.transform(adapter.synthetic_sample(0), 0, False, None)
    grid_batch = adapter.grid_batch(as_batch([sample]), CPU)
    for w in (width, 512):
        codes = embedding.codes(grid_batch, embedding.layout(grid_batch), w)
        assert codes.shape == (1, 5 * 4, w) and torch.isfinite(codes).all()


def test_reference_pixel_size_scales_positions():
    adapter = make_adapter(32, reference_pixel_size=0.65)
    embedding = adapter.build_embedding(adapter.config.model)
    sample = adapter.transform(adapter.synthetic_sample(0), 0, False, None)
    coarse = adapter.transform(adapter.synthetic_sample(0), 0, False, None)
    coarse.meta = {**coarse.meta, "pixel_size": [1.3, 1.3]}
    grid_batch = adapter.grid_batch(as_batch([sample, coarse]), CPU)
    assert grid_batch.meta["spacing"].tolist() == [[0.65, 0.65], [1.3, 1.3]]
    codes = embedding.codes(grid_batch, embedding.layout(grid_batch), 64)
    assert not torch.allclose(codes[0], codes[1])  # twice the pixel size: positions twice as far apart
    plain = make_adapter(32)
    assert "spacing" not in plain.grid_batch(as_batch([sample, coarse]), CPU).meta
