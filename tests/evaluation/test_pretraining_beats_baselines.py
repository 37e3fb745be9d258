"""Pretraining must help: a tiny MAE pretrained on a generated archive beats a randomly initialized
encoder of the same shape and kNN on raw pixels, with kNN and a linear probe, over three seeds.

The classes are warped stripe textures whose mean orientation (0, 45, 90 or 135 degrees) is the label;
every image has the same mean and contrast, a random phase, frequency and smooth warp, so the class
lives in structure, not intensity. Raw-pixel kNN is hampered by the random phase and warp, a random
encoder by its untrained filters; an MAE must learn the local orientation to fill masked patches.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from mae_domains.config import load_config
from mae_domains.data.dataset import ArchiveDataset, collate_items
from mae_domains.engine import pretrain
from mae_domains.evaluation import knn_accuracy, linear_probe_accuracy
from mae_domains.runs import load_run

SIZE = 32
CLASSES = 4
SEEDS = (0, 1, 2)
MARGIN = 0.08  # stated margin: pretrained beats each baseline by at least 8 accuracy points (mean of seeds)


def warped_stripes(label: int, rng: np.random.Generator) -> np.ndarray:
    theta = label * np.pi / CLASSES + rng.uniform(-0.15, 0.15)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    warp = gaussian_filter(rng.standard_normal((SIZE, SIZE)), 4.0, mode="wrap")
    phase = (2 * np.pi * rng.uniform(0.12, 0.2) * (xx * np.cos(theta) + yy * np.sin(theta))
             + 2.3 * warp / warp.std() + rng.uniform(0, 2 * np.pi))
    image = np.sin(phase) + 0.3 * rng.standard_normal((SIZE, SIZE))
    image = (image - image.mean()) / image.std()
    return np.clip(128 + 40 * image, 0, 255).astype(np.uint8)


def write_split(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label in range(CLASSES):
        folder = root / f"orientation{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(warped_stripes(label, rng)).save(folder / f"{i:04d}.png")
    return root


def split_tensors(run, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    adapter = run.adapter
    refs = adapter.discover([root])
    labels = torch.tensor([int(adapter.label_of(r).removeprefix("orientation")) for r in refs])
    dataset = ArchiveDataset(adapter, refs, run.stats, train=False)
    return collate_items([dataset[i] for i in range(len(dataset))])["image"], labels


def scores(features_train, y_train, features_test, y_test) -> tuple[float, float]:
    knn = knn_accuracy(features_train, y_train, features_test, y_test, k=20, temperature=0.07, device="cpu")
    probe = linear_probe_accuracy(features_train, y_train, features_test, y_test)
    return float(knn), float(probe)


@pytest.mark.slow
def test_pretrained_encoder_beats_random_init_and_raw_pixels(tmp_path):
    unlabelled_root = write_split(tmp_path / "unlabelled", 500, seed=300)  # pretraining archive
    train_root = write_split(tmp_path / "train", 60, seed=100)  # small labelled set, as in practice
    test_root = write_split(tmp_path / "test", 100, seed=200)
    results: dict[str, list[tuple[float, float]]] = {"pretrained": [], "random init": [], "raw pixels": []}
    for seed in SEEDS:
        config = load_config(None, [
            "adapter=image", f"data.sources=[{unlabelled_root}]", "data.num_workers=1",
            "data.options={crop_scale: [0.9, 1.0], hflip: false}",
            "model.preset=micro", f"model.img_size={SIZE}", "model.patch_size=8", "model.in_chans=1",
            "model.decoder_embed_dim=64", "model.decoder_depth=1", "model.decoder_num_heads=4",
            "model.norm_pix_loss=true", "optim.base_lr=4e-3", "optim.warmup_steps=100",
            "engine.batch_size=64", "engine.max_steps=3000", "engine.checkpoint_every=3000", "engine.log_every=500",
            f"engine.seed={seed}", "engine.threads=2", "engine.precision=fp32",
        ])
        pretrain(config, tmp_path / f"run{seed}")
        run = load_run(tmp_path / f"run{seed}")
        x_train, y_train = split_tensors(run, train_root)
        x_test, y_test = split_tensors(run, test_root)
        torch.manual_seed(seed)
        random_model = run.adapter.build_model(config.model, config.mask).eval()
        with torch.no_grad():
            for name, model in (("pretrained", run.model), ("random init", random_model)):
                encoder = model.encoder
                f_train = encoder.pool(encoder.forward_features(x_train), "avg")
                f_test = encoder.pool(encoder.forward_features(x_test), "avg")
                results[name].append(scores(f_train, y_train, f_test, y_test))
        results["raw pixels"].append(scores(x_train.flatten(1), y_train, x_test.flatten(1), y_test))

    print("\naccuracy over seeds", SEEDS, "(kNN k=20 T=0.07 | linear probe), chance = 0.25")
    means = {}
    for name, rows in results.items():
        means[name] = np.mean(rows, axis=0)
        per_seed = "  ".join(f"{k:.3f}|{p:.3f}" for k, p in rows)
        print(f"  {name:<12} mean kNN {means[name][0]:.3f}  probe {means[name][1]:.3f}   per seed {per_seed}")
    for baseline in ("random init", "raw pixels"):
        for i, protocol in enumerate(("kNN", "linear probe")):
            gain = means["pretrained"][i] - means[baseline][i]
            print(f"  pretrained vs {baseline}, {protocol}: {gain:+.3f} (required >= {MARGIN})")
            assert gain >= MARGIN, f"pretrained {protocol} beats {baseline} by only {gain:+.3f}"
