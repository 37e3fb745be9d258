"""Model-side behaviour of the remote-sensing adapters: nodata carries no loss, any T at inference,
per-group targets in band order, and a figure from a real chip."""

from __future__ import annotations

import numpy as np
import torch

from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.rasters import write_raster


def batch_of(adapter, samples):
    return {"image": torch.from_numpy(np.stack([s.image for s in samples])),
            "valid": torch.from_numpy(np.stack([s.valid for s in samples])),
            "mask_seed": torch.tensor([11, 12]), "meta": [s.meta for s in samples]}


def test_invalid_pixels_have_zero_loss_weight_and_are_masked():
    adapter = make_adapter("multispectral")
    samples = [adapter.transform(adapter.synthetic_sample(s), s, False, None) for s in (0, 1)]
    for s in samples:  # a fully nodata top-left token in every group
        s.valid[:8, :8] = False
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    out = model(**adapter.model_inputs(batch_of(adapter, samples), torch.device("cpu")))
    assert torch.isfinite(out.loss)
    layout = out.layout
    first_tokens = [g * layout.axis("y").size * layout.axis("x").size for g in range(layout.axis("group").size)]
    assert (out.mask[:, first_tokens] == 1).all()  # invalid tokens are always in the masked set
    rows = (out.query_ids.unsqueeze(-1) == torch.tensor(first_tokens)).any(-1)
    assert (out.token_weight[rows] == 0).all() and (out.weight[rows] == 0).all()


def test_temporal_model_takes_any_number_of_dates():
    adapter = make_adapter("temporal", frames=3)
    model = adapter.build_model(adapter.config.model, adapter.config.mask).eval()
    for frames in (1, 2, 5):
        other = make_adapter("temporal", frames=frames)
        samples = [other.transform(other.synthetic_sample(s), s, False, None) for s in (0, 1)]
        embedding = adapter.embed(model, batch_of(other, samples), torch.device("cpu"), pool="avg")
        assert embedding.shape == (2, 64) and torch.isfinite(embedding).all()


def test_group_targets_follow_band_names(tmp_path):
    """Bands listed in a different order than the groups still reconstruct to the right band."""
    adapter = make_adapter("multispectral", bands=["B11", "B2", "B8", "B3"], groups=[["B2", "B3"], ["B8", "B11"]])
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    images = torch.arange(4, dtype=torch.float32).reshape(1, 4, 1, 1).expand(1, 4, 32, 32).contiguous()
    from mae_domains.grid import GridBatch

    layout = model.embedding.layout(GridBatch(images))
    back = model.embedding.unpatchify(model.embedding.target_patches(images, layout), layout)
    assert torch.equal(back, images)
    patches = model.embedding.target_patches(images, layout)
    # group 0 reads B2 (index 1) then B3 (index 3): channel-last patch values alternate 1, 3
    assert patches[0, 0, :2].tolist() == [1.0, 3.0]


def test_reconstruction_figure_from_a_geotiff_chip(tmp_path):
    from mae_remote_sensing.synthetic import synthetic_scene

    bands = ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
    image, _ = synthetic_scene(0, bands, 64, 64)
    path = write_raster(tmp_path / "s2.tif", image.astype(np.uint16), nodata=0, descriptions=bands)
    adapter = make_adapter("multispectral", chips_per_scene=2)
    refs = adapter.discover([path])
    stats = adapter.compute_stats(refs)
    assert stats.channel_names == list(adapter.bands) and all(s > 0 for s in stats.std)
    samples = [adapter.transform(adapter.read(r), i, True, stats) for i, r in enumerate(refs)]
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    batch = batch_of(adapter, samples)
    with torch.no_grad():
        out = model(**adapter.model_inputs(batch, torch.device("cpu")))
    figure = adapter.render_reconstruction(model, batch, out, tmp_path / "recon.png")
    assert figure.is_file() and figure.stat().st_size > 5000
