"""Small synthetic data for the evaluation tests: dict batches, separable features, a micro ViT."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mae_domains.models import build_mae


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


def micro_encoder(seed: int = 0):
    torch.manual_seed(seed)
    return build_mae("micro", img_size=32, patch_size=8, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4).encoder


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
