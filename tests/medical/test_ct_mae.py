"""The 3D MAE of ``medical.ct``: recipe, spacing-aware codes, padded crops as invalid tokens, masking along
z, the orthogonal-slice figure, and the conformance kit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mae_domains.config import load_config
from mae_domains.data.dataset import collate_items
from mae_domains.data.sample import Sample
from mae_domains.testing.conformance import check_adapter
from mae_medical.ct import CTAdapter
from mae_medical.volume_rendering import mid_slices

TINY = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "model.decoder_num_heads=4"]


def bound(overrides=(), **options) -> CTAdapter:
    adapter = CTAdapter({"cache_dir": "none", **options})
    adapter.bind(load_config(None, ["adapter=medical.ct", *TINY, *overrides]))
    return adapter


def item(adapter: CTAdapter, sample: Sample, seed: int, index: int = 0) -> dict:
    s = adapter.transform(sample, seed, True, None)
    return {"image": torch.from_numpy(s.image), "valid": torch.from_numpy(s.valid), "meta": s.meta,
            "mask_seed": 1000 + index, "index": index, "skipped": []}


def test_recipe_is_vit_base_on_96_cubes_of_16_with_216_tokens():
    config = load_config("configs/medical_ct_vit_base.yaml", [])
    adapter = CTAdapter({"cache_dir": "none"})
    adapter.bind(config)
    assert (config.model.preset, config.model.img_size, config.model.patch_size) == ("base", 96, 16)
    assert config.mask.ratio == 0.75 and config.model.in_chans == 1
    embedding = adapter.build_embedding(config.model)
    from mae_domains.grid import GridBatch

    layout = embedding.layout(GridBatch(torch.zeros(1, 1, 96, 96, 96)))
    assert layout.shape == (6, 6, 6) and layout.num_tokens == 216 and embedding.embed_dim == 768


def test_padding_of_a_small_volume_is_invalid_and_never_scored():
    adapter = bound()
    small = Sample(np.random.default_rng(0).random((1, 16, 40, 40), dtype=np.float32),
                   {"source": "small", "spacing": [2.0, 1.5, 1.5]})
    out = adapter.transform(small, 7, True, None)
    assert out.image.shape == (1, 32, 32, 32)
    assert out.valid[:8].sum() == 0 and out.valid[24:].sum() == 0 and out.valid[8:24].all()
    assert np.all(out.image[0][~out.valid] == 0)
    batch = collate_items([item(adapter, small, 7, 0), item(adapter, small, 8, 1)])
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    result = model(**adapter.model_inputs(batch, torch.device("cpu")))
    # tokens are 8^3 cubes on a 4^3 grid: z-rows 0 and 3 are padding
    grid_z = result.query_ids // 16
    padded = (grid_z == 0) | (grid_z == 3)
    assert padded.any() and torch.all(result.token_weight[padded] == 0)
    kept_z = result.masking.ids_keep // 16
    assert torch.all((kept_z == 1) | (kept_z == 2))  # invalid tokens are forced into the masked set
    # changing padded voxels changes nothing in the loss
    poisoned = dict(batch, image=torch.where(batch["valid"][:, None], batch["image"], torch.full_like(batch["image"], 9.0)))
    again = model(**adapter.model_inputs(poisoned, torch.device("cpu")))
    assert torch.allclose(result.loss, again.loss, atol=1e-6)


def test_spacing_reaches_the_embedding_and_scales_the_codes():
    adapter = bound(target_spacing=None)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    base = Sample(np.zeros((1, 32, 32, 32), np.float32), {"source": "a", "spacing": [2.0, 1.5, 1.5]})
    fine = Sample(np.zeros((1, 32, 32, 32), np.float32), {"source": "b", "spacing": [1.0, 0.75, 0.75]})
    batch = collate_items([item(adapter, base, 0), item(adapter, fine, 0, 1)])
    grid_batch = adapter.grid_batch(batch, torch.device("cpu"))
    assert grid_batch.meta["spacing"].shape == (2, 3)
    embedding = model.encoder.embedding
    layout = embedding.layout(grid_batch)
    codes = embedding.codes(grid_batch, layout, embedding.embed_dim)
    assert codes.shape[-2:] == (64, embedding.embed_dim)
    assert not torch.allclose(codes[0], codes[1])  # half the voxel size: positions at half the mm


def test_consistent_masking_along_z_masks_the_same_in_plane_cubes():
    adapter = bound(["mask.strategy=consistent", "mask.axis=z"])
    sample = adapter.synthetic_sample(0)
    batch = collate_items([item(adapter, sample, 1)])
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    mask = model(**adapter.model_inputs(batch, torch.device("cpu"))).mask.reshape(4, 16)
    valid_rows = [1, 2]  # the 28-slice phantom leaves the first and last 8^3 slab partly padded
    assert torch.equal(mask[valid_rows[0]], mask[valid_rows[1]])


def test_mid_slices_are_axial_coronal_sagittal_as_a_radiologist_views_them():
    volume = np.zeros((6, 8, 10))  # (S, A, R)
    volume[3, 7, 5] = 1.0  # most anterior row of the mid axial slice
    volume[3, 4, 9] = 2.0  # patient's far right (x = R largest) on the mid axial/coronal planes
    volume[5, 4, 5] = 3.0  # most superior slice, on the mid coronal and sagittal planes
    axial, coronal, sagittal = mid_slices(volume)
    assert axial.shape == (8, 10) and coronal.shape == (6, 10) and sagittal.shape == (6, 8)
    assert axial[0, 4] == 1  # anterior at the top
    assert axial[3, 0] == 2 and coronal[2, 0] == 2  # patient's right on the viewer's left
    assert coronal[0, 4] == 3 and sagittal[0, 3] == 3  # superior at the top
    assert sagittal[2, 0] == 1  # anterior on the left


def test_ct_preview_is_radiological_with_labelled_directions(tmp_path, monkeypatch):
    """``inspect``'s preview of a CT draws the mid-slices as a radiologist views them (not the generic
    volume preview, which put the spine at the top and the patient's right on the right), directions
    written at each panel's edges."""
    import matplotlib.pyplot as plt

    from mae_medical import volume_rendering

    volume = np.zeros((6, 8, 10), np.float32)  # (S, A, R)
    volume[3, 7, 5] = 1.0  # anterior, on the mid axial slice
    volume[3, 4, 9] = 0.5  # the patient's far right
    figures = []
    monkeypatch.setattr(volume_rendering, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    sample = Sample(volume[None], {"source": "ct.nii.gz", "spacing": [2.0, 1.5, 1.5]})
    CTAdapter({"cache_dir": "none"}).render_sample(sample, tmp_path / "p.png")
    (fig,) = figures
    axial_ax = fig.axes[0]
    axial = np.asarray(axial_ax.images[0].get_array())[..., 0]
    assert axial[0, 4] == 1.0 and axial[3, 0] == 0.5  # anterior at the top, patient's right on the left
    edges = [sorted(t.get_text() for t in ax.texts) for ax in fig.axes]
    assert edges == [["A", "L", "P", "R"], ["I", "L", "R", "S"], ["A", "I", "P", "S"]]
    assert "2 x 1.5 x 1.5 mm" in fig._suptitle.get_text()
    plt.close(fig)


def test_conformance_without_spawned_workers():
    report = check_adapter(CTAdapter({"cache_dir": "none"}),
                           only=[n for n in __import__("mae_domains.testing.conformance", fromlist=["CHECKS"]).CHECKS
                                 if "spawn" not in n])
    assert report.passed, report.render()


@pytest.mark.slow
def test_conformance_spawned_workers():
    report = check_adapter(CTAdapter({"cache_dir": "none"}), only=["picklable for spawned DataLoader workers"])
    assert report.passed, report.render()
