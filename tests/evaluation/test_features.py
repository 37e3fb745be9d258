import json

import numpy as np
import pytest
import torch

from mae_domains.evaluation.features import (
    EncoderEmbedding, FeatureCache, RawPixelEmbedding, cache_key, cached_features, extract_features, grid_embedder,
)
from mae_domains.grid import GridBatch
from mae_domains.models.embeddings.patch2d import TemporalPatchEmbed
from tests.evaluation.helpers import dict_loader, micro_encoder, micro_grid_mae, pattern_images


class CountingEmbed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.proj = torch.nn.Linear(3 * 32 * 32, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.proj(images.flatten(1))


def test_extract_features_with_encoder_matches_manual_pooling():
    images, labels = pattern_images(5)
    encoder = micro_encoder()
    encoder.train()
    features = extract_features(encoder, dict_loader(images, labels, 4), device="cpu", pool="avg")
    assert features.features.shape == (10, 64) and features.features.dtype == np.float32
    assert features.labels.dtype == np.int64 and features.labels.tolist() == labels.tolist()
    assert features.sample_ids[:3] == ["s0000", "s0001", "s0002"]
    assert encoder.training  # mode restored
    encoder.eval()
    with torch.no_grad():
        expected = encoder.pool(encoder.forward_features(images), "avg")
    np.testing.assert_allclose(features.features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_generic_embed_fn_and_multilabel_labels():
    images, labels = pattern_images(3)
    targets = torch.stack([labels.float(), 1 - labels.float()], dim=1)
    features = extract_features(RawPixelEmbedding(size=8), dict_loader(images, targets, 4), device="cpu")
    assert features.features.shape == (6, 3 * 8 * 8)
    assert features.multilabel and features.labels.dtype == np.float32
    plain = extract_features(lambda x: x.mean(dim=(2, 3)), dict_loader(images, labels, 4), device="cpu")
    assert plain.features.shape == (6, 3)


def test_cache_second_call_does_not_run_the_model(tmp_path):
    images, labels = pattern_images(4)
    loader = dict_loader(images, labels, 3)
    model = CountingEmbed()
    first = cached_features(model, loader, tmp_path, "ckpt-a", "toy/train", {"size": 32}, device="cpu")
    calls = model.calls
    assert calls == 3
    second = cached_features(model, loader, tmp_path, "ckpt-a", "toy/train", {"size": 32}, device="cpu")
    assert model.calls == calls  # cache hit
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.sample_ids == second.sample_ids
    # Another checkpoint, dataset or setting is another entry.
    cached_features(model, loader, tmp_path, "ckpt-b", "toy/train", {"size": 32}, device="cpu")
    cached_features(model, loader, tmp_path, "ckpt-a", "toy/train", {"size": 32}, device="cpu", pool="avg")
    assert model.calls == calls + 6
    # Plain arrays and JSON only: no pickles anywhere.
    suffixes = {p.suffix for p in tmp_path.iterdir()}
    assert suffixes == {".npy", ".json"}
    for path in tmp_path.glob("*.npy"):
        np.load(path, allow_pickle=False)
    meta = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert "sample_ids" in meta


def test_cache_keys_and_unreadable_entry(tmp_path):
    assert cache_key("a", "d", {"x": 1}) == cache_key("a", "d", {"x": 1})
    assert cache_key("a", "d", {"x": 1}) != cache_key("a", "d", {"x": 2})
    cache = FeatureCache(tmp_path)
    images, labels = pattern_images(2)
    model = CountingEmbed()
    cached_features(model, dict_loader(images, labels), cache, "c", "d", device="cpu")
    key = cache_key("c", "d", {"pool": "cls"})
    (tmp_path / f"{key}.json").write_text("{not json")
    assert cache.load(key) is None
    cached_features(model, dict_loader(images, labels), cache, "c", "d", device="cpu")
    assert model.calls == 2


def test_embed_fn_must_return_2d():
    images, labels = pattern_images(2)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        extract_features(lambda x: x, dict_loader(images, labels), device="cpu")
    with pytest.raises(TypeError):
        EncoderEmbedding(torch.nn.Linear(2, 2))


def test_grid_embedder_reads_metadata_and_leaves_invalid_tokens_out():
    torch.manual_seed(0)
    encoder = micro_grid_mae(TemporalPatchEmbed(3, 64, 8)).encoder.eval()
    images = torch.randn(2, 2, 3, 16, 16)
    valid = torch.ones(2, 2, 1, 16, 16, dtype=torch.bool)
    valid[:, 1] = False  # the second frame holds no data

    def dated(day: float):
        def grid_batch(batch, device):
            dates = torch.tensor([[2021.0, 90.0], [2021.0, day]]).expand(len(batch["image"]), -1, -1)
            return GridBatch(batch["image"].to(device), batch.get("valid"), {"dates": dates})
        return grid_batch

    batch = {"image": images, "valid": valid}
    with torch.no_grad():
        early, late = (grid_embedder(encoder, dated(d), "cls")(batch, torch.device("cpu")) for d in (120.0, 300.0))
        assert early.shape == (2, 64) and not torch.allclose(early, late)  # the dates reach the encoder
        pooled = grid_embedder(encoder, dated(120.0), "avg")(batch, torch.device("cpu"))
        grid = encoder.forward_grid(dated(120.0)(batch, torch.device("cpu")))
        first_frame = grid.tokens[:, : grid.layout.num_tokens // 2]  # tokens are time-major
    torch.testing.assert_close(pooled, first_frame.mean(dim=1))
    with pytest.raises(ValueError, match="pooling"):
        grid_embedder(encoder, dated(1.0), "max")
