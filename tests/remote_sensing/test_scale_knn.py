"""The ``knn_multiscale`` protocol: registered, resizes with the matching GSD, weighted kNN as specified,
and at full scale agrees with the shared ``knn`` protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mae_domains.grid import GridBatch
from mae_domains.protocols import get_protocol
from mae_remote_sensing.multiscale_knn import rescale_batch, scaled_size, weighted_knn_predict
from tests.remote_sensing.conftest import make_adapter


def labelled_batches(adapter, count: int, offset: int, batch_size: int = 6):
    """Synthetic chips whose class (0, 1, 2) shifts every band; GSD 10 m."""
    items = []
    for i in range(count):
        s = adapter.transform(adapter.synthetic_sample(offset + i), 0, False, None)
        label = (offset + i) % 3
        s.meta["gsd"] = [10.0, 10.0]
        items.append((torch.from_numpy(s.image) / 3000.0 + 0.7 * label, torch.from_numpy(s.valid), s.meta, label))
    batches = []
    for start in range(0, count, batch_size):
        part = items[start:start + batch_size]
        batches.append({"image": torch.stack([p[0] for p in part]), "valid": torch.stack([p[1] for p in part]),
                        "meta": [p[2] for p in part], "label": torch.tensor([p[3] for p in part]),
                        "sample_id": [p[2]["sample_id"] for p in part]})
    return batches


def test_weighted_vote_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    train, test = torch.from_numpy(rng.normal(size=(40, 8))), torch.from_numpy(rng.normal(size=(7, 8)))
    labels = torch.from_numpy(rng.integers(0, 3, 40))
    pred = weighted_knn_predict(train, labels, test, k=5, temperature=0.07, num_classes=3)
    tn = train.numpy() / np.linalg.norm(train.numpy(), axis=1, keepdims=True)
    for row, p in zip(test.numpy(), pred.tolist()):
        sims = tn @ (row / np.linalg.norm(row))
        top = np.argsort(-sims)[:5]
        votes = np.zeros(3)
        for j in top:
            votes[labels[j]] += np.exp(sims[j] / 0.07)
        assert p == int(votes.argmax())


def test_rescaling_multiplies_the_gsd():
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    batch = GridBatch(images, torch.ones(2, 32, 32, dtype=torch.bool),
                      {"spacing": torch.tensor([[10.0, 10.0], [20.0, 5.0]], dtype=torch.float64)})
    small = rescale_batch(batch, (16, 16))
    assert small.images.shape == (2, 3, 16, 16) and small.valid.shape == (2, 16, 16)
    torch.testing.assert_close(small.images, images.reshape(2, 3, 16, 2, 16, 2).mean(dim=(3, 5)))
    torch.testing.assert_close(small.meta["spacing"], torch.tensor([[20.0, 20.0], [40.0, 10.0]], dtype=torch.float64))
    assert scaled_size(224, 0.5, 16) == 112 and scaled_size(224, 0.3, 16) == 64 and scaled_size(32, 0.1, 8) == 8


def test_protocol_reports_each_scale_and_the_mean():
    from mae_domains.evaluation import run_protocol

    assert get_protocol("knn_multiscale").defaults()["k"] == 20
    adapter = make_adapter("scale", img_size=32)
    torch.manual_seed(0)
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    train, test = labelled_batches(adapter, 18, 0), labelled_batches(adapter, 9, 100)
    details: dict = {}
    records = run_protocol("knn_multiscale", train, test, encoder=model.encoder, grid_batch=adapter.grid_batch,
                           class_names=["a", "b", "c"], device="cpu", details=details)
    summary = {r.metric: r.value for r in records}
    per_scale = [summary[f"top1@{s}px"] for s in (8, 16, 24, 32)]
    assert summary["top1_mean"] == pytest.approx(sum(per_scale) / 4)
    assert all(0.0 <= v <= 1.0 for v in per_scale)
    # at full scale it is the shared knn protocol on CLS features
    plain = run_protocol("knn", train, test, encoder=model.encoder, grid_batch=adapter.grid_batch,
                         class_names=["a", "b", "c"], device="cpu")
    top1 = next(r.value for r in plain if r.metric in ("top1", "accuracy", "top1_accuracy"))
    assert summary["top1@32px"] == pytest.approx(top1)


@pytest.mark.slow
@pytest.mark.parametrize("target_scale", [1, 2])
def test_pretraining_on_geotiffs_with_multiscale_crops(tmp_path, target_scale):
    """The engine pretrains remote_sensing.scale from real files: multi-scale reads, finite loss; with
    Scale-MAE's 2x target too."""
    from mae_domains.config import load_config
    from mae_domains.engine import pretrain
    from mae_remote_sensing.synthetic import synthetic_scene
    from tests.remote_sensing.rasters import write_raster

    bands = ["B4", "B3", "B2", "B8"]
    for i, res in enumerate((10.0, 10.0, 20.0, 30.0)):
        image, _ = synthetic_scene(i, bands, 96, 96, nodata_corner=False)
        write_raster(tmp_path / "archive" / f"scene_{i}.tif", image, res=res, descriptions=bands, tiled=True,
                     overviews=(2, 4))
    config = load_config(None, ["adapter=remote_sensing.scale", "model.img_size=32", "model.preset=micro",
                                "model.patch_size=8", "model.decoder_embed_dim=32", "model.decoder_depth=1",
                                "model.decoder_num_heads=4", "engine.batch_size=4", "engine.max_steps=3",
                                "engine.device=cpu", "data.num_workers=0", "data.stats_samples=8"],
                         base={"data": {"sources": [str(tmp_path / "archive")],
                                        "options": {"bands": bands, "chips_per_scene": 2,
                                                    "target_scale": target_scale}}})
    result = pretrain(config, tmp_path / "run")
    assert result.steps == 3 and np.isfinite(result.final_loss)
