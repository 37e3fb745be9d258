"""Pretraining on an archive whose samples make different token grids (gray and RGB images under a
channel-agnostic model): every batch holds one grid signature, and a resumed run equals an
uninterrupted one bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mae_domains.data.sample import NormStats, Sample
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv
from mae_domains.models.embeddings.channel_shared import ChannelSharedPatchEmbed
from mae_image import ImageAdapter

from .conftest import StopAfter, assert_optimizer_equal, assert_tensors_equal, crash_at, load_checkpoint, make_config

CHANNEL_NAMES = {1: ["gray"], 3: ["red", "green", "blue"]}
SETTINGS = ("engine.batch_size=4", "engine.max_steps=8", "engine.checkpoint_every=3", "engine.log_every=1",
            "data.num_workers=0", "model.drop_path_rate=0.2", "engine.seed=5")


class MixedChannelAdapter(ImageAdapter):
    """Gray and RGB PNGs as they are (1 or 3 channels) through one patch projection shared by all
    channels (CA-MAE), each crop standardized per channel. The grid signature is the file's channel
    count, read from its header; ``bucketed=False`` declares none (the negative control)."""

    name = "test.mixed_channels"

    def __init__(self, options: dict[str, Any] | None = None, bucketed: bool = True) -> None:
        super().__init__(options)
        self.bucketed = bucketed
        self.batch_channel_counts: list[set[int]] = []

    def grid_signature(self, ref: Any) -> Any:
        if not self.bucketed:
            return None
        with Image.open(ref) as image:
            return len(image.getbands())

    def read(self, ref: Any) -> Sample:
        with Image.open(ref) as image:
            pixels = np.asarray(image, np.float32) / 255.0
        array = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
        return Sample(np.ascontiguousarray(array), {"source": str(ref), "sample_id": Path(ref).stem,
                                                    "channel_names": CHANNEL_NAMES[len(array)]})

    def stats_view(self, sample: Sample) -> np.ndarray:
        return sample.image.reshape(1, -1)  # one statistic over every channel of every sample

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        cropped = super().transform(sample, seed, train, None)
        image = cropped.image
        mean, std = image.mean(axis=(1, 2), keepdims=True), image.std(axis=(1, 2), keepdims=True)
        return Sample(((image - mean) / (std + 1e-6)).astype(np.float32), cropped.meta, None, cropped.label)

    def build_embedding(self, model) -> ChannelSharedPatchEmbed:
        return ChannelSharedPatchEmbed(self.embed_dim(model), int(model.patch_size), ["gray", "red", "green", "blue"])

    def batch_meta(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        return {"channel_names": [m["channel_names"] for m in batch["meta"]]}

    def model_inputs(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        self.batch_channel_counts.append({len(m["channel_names"]) for m in batch["meta"]})
        return super().model_inputs(batch, device)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """12 gray and 12 RGB PNGs, interleaved in file order: 3 + 3 batches of 4 per epoch."""
    folder = tmp_path_factory.mktemp("mixed") / "archive"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        shape = (40, 40) if i % 2 else (40, 40, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def test_batches_hold_one_signature_and_resume_exactly(archive, tmp_path):
    config = make_config(archive, *SETTINGS)
    adapter = MixedChannelAdapter()
    assert pretrain(config, tmp_path / "full", adapter=adapter).steps == 8
    counts = adapter.batch_channel_counts
    assert len(counts) == 8 and all(len(c) == 1 for c in counts)
    assert {1, 3} <= set().union(*counts)

    with pytest.raises(StopAfter):
        pretrain(config, tmp_path / "resumed", adapter=MixedChannelAdapter(), on_step=crash_at(4))
    assert load_checkpoint(tmp_path / "resumed")["step"] == 3
    resumed_adapter = MixedChannelAdapter()
    pretrain(config, tmp_path / "resumed", resume=True, adapter=resumed_adapter)
    assert resumed_adapter.batch_channel_counts == counts[3:]

    full, resumed = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "resumed")
    assert full["step"] == resumed["step"] == 8
    assert_tensors_equal(full["model"], resumed["model"], exact=True)
    assert_optimizer_equal(full["optimizer"], resumed["optimizer"], exact=True)
    rows = [[(r["step"], r["loss"]) for r in read_csv(run / "metrics.csv")] for run in (tmp_path / "full", tmp_path / "resumed")]
    assert rows[0] == rows[1] and len(rows[0]) == 8


def test_without_a_signature_mixed_grids_fail_with_a_clear_message(archive, tmp_path):
    with pytest.raises(ValueError, match="different image shapes.*grid_signature"):
        pretrain(make_config(archive, *SETTINGS), tmp_path / "run", adapter=MixedChannelAdapter(bucketed=False))
