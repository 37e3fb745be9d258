"""Small synthetic data for the evaluation tests: dict batches, separable features, micro grid encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mae_domains.grid import GridBatch
from mae_domains.models.embeddings.band_groups import BandGroupPatchEmbed
from mae_domains.models.embeddings.channel_shared import ChannelSharedPatchEmbed
from mae_domains.models.embeddings.cube3d import CubePatchEmbed3D
from mae_domains.models.embeddings.patch2d import PatchEmbed2D, TemporalPatchEmbed
from mae_domains.models.grid_mae import build_grid_mae


class DictDataset(Dataset):
    """Items ``{"image", "label", "sample_id"}`` from in-memory arrays."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, prefix: str = "s") -> None:
        self.images, self.labels, self.prefix = images, labels, prefix

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "sample_id": f"{self.prefix}{i:04d}"}


def dict_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 16, shuffle: bool = False,
                prefix: str = "s") -> DataLoader:
    generator = torch.Generator().manual_seed(0) if shuffle else None
    return DataLoader(DictDataset(images, labels, prefix), batch_size=batch_size, shuffle=shuffle, generator=generator)


def separable_features(n_per_class: int, num_classes: int, dim: int = 16, seed: int = 0, spread: float = 0.3):
    """Gaussian clusters around random unit directions: ``(features (N, dim), labels (N,))``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(num_classes), n_per_class)
    features = centres[labels] * 3.0 + spread * rng.standard_normal((labels.size, dim))
    order = rng.permutation(labels.size)
    return features[order].astype(np.float32), labels[order].astype(np.int64)


MICRO = dict(preset="micro", decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)


def micro_grid_mae(embedding):
    """A micro GridMAE (width 64, 2 blocks, 1-block decoder) around ``embedding`` (seed before building it)."""
    return build_grid_mae(embedding, **MICRO)


def micro_encoder(seed: int = 0, in_chans: int = 3):
    """The encoder of a micro 2D GridMAE with 8 px patches."""
    torch.manual_seed(seed)
    return micro_grid_mae(PatchEmbed2D(in_chans, 64, 8)).encoder


def pattern_images(n_per_class: int, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes that differ in structure, not mean: horizontal vs vertical stripes, random phase."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    coords = np.arange(size)
    for label in (0, 1):
        for _ in range(n_per_class):
            phase = rng.uniform(0, 2 * np.pi)
            wave = np.sin(coords * 2 * np.pi / 8 + phase)
            image = np.tile(wave[:, None], (1, size)) if label == 0 else np.tile(wave[None, :], (size, 1))
            image = image + 0.3 * rng.standard_normal((size, size))
            images.append(np.repeat(image[None], 3, axis=0))
            labels.append(label)
    return torch.tensor(np.array(images), dtype=torch.float32), torch.tensor(labels)


def write_stripes_archive(root: Path, split: str, n_per_class: int, seed: int) -> None:
    """:func:`pattern_images` as PNGs under ``root/split/{horizontal,vertical}/``."""
    images, labels = pattern_images(n_per_class, seed=seed)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / split / ("horizontal" if label == 0 else "vertical")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip((image.permute(1, 2, 0).numpy() + 2) / 4 * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png")


def write_image_run(path: Path, archive: Path, sections: Mapping[str, Any] | None = None) -> None:
    """What the engine saves for a micro ``image`` run (model, config, statistics, adapter name, step) at
    ``path`` (a ``checkpoint.pt``), with ``config.yaml`` beside it; ``sections`` adds config sections."""
    from mae_domains.config import config_from_dict, dump_config
    from mae_domains.registry import get_adapter

    config = config_from_dict({"adapter": "image", "model": {
        "preset": "micro", "img_size": 32, "patch_size": 8, "in_chans": 3,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 4}, "data": {"sources": [str(archive)]},
        **dict(sections or {})})
    adapter = get_adapter("image").bind(config)
    torch.manual_seed(0)
    model = adapter.build_model(config.model, config.mask)
    stats = adapter.compute_stats(adapter.discover([str(archive / "train")]))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "stats": stats.as_dict(),
                "adapter": "image", "step": 123, "version": "0.1.0"}, path)
    dump_config(config, path.parent / "config.yaml")


def class_signal(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class (0 or 1) shifts the first channel of the top half up or down."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randn(n, *shape, generator=g)
    sign = (labels.float() * 2 - 1).reshape(n, *([1] * len(shape)))
    top = images[..., : shape[-2] // 2, :]
    top.select(-3 if len(shape) == 3 else 1, 0).add_(1.5 * sign.squeeze(1))
    return images, labels


def dates_grid_batch(batch, device):
    """Two dated frames (year, day of year) per sample, as a temporal adapter's ``grid_batch`` gives them."""
    dates = torch.tensor([[2020.0, 100.0], [2020.0, 250.0]], device=device)
    return GridBatch(batch["image"].to(device), meta={"dates": dates.expand(batch["image"].shape[0], -1, -1)})


def channels_grid_batch(batch, device):
    """Named channels, as a channel-agnostic adapter's ``grid_batch`` gives them."""
    return GridBatch(batch["image"].to(device), meta={"channel_names": ["DNA", "RNA", "ER"]})


# The grid encoders of the built-in embeddings, each with a sample shape and (where the embedding reads
# metadata) a batch function.
GRID_KINDS = {
    # name: (embedding factory, sample shape, batch function or None for the images alone)
    "2d": (lambda: PatchEmbed2D(3, 64, 8), (3, 16, 16), None),
    "band_groups": (lambda: BandGroupPatchEmbed([[0, 1], [2, 3]], 64, 8), (4, 16, 16), None),
    "temporal": (lambda: TemporalPatchEmbed(3, 64, 8), (2, 3, 16, 16), dates_grid_batch),
    "cube3d": (lambda: CubePatchEmbed3D(1, 64, 8), (1, 16, 16, 16), None),
    "channel_shared": (lambda: ChannelSharedPatchEmbed(64, 8, ["DNA", "RNA", "ER", "AGP"]), (3, 16, 16), channels_grid_batch),
}
