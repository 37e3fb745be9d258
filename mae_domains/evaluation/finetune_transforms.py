"""Fine-tuning's augmentations (MAE's recipe, ``main_finetune.py`` of facebookresearch/mae), with timm's parts.

Per sample, in the loader (:class:`FinetuneTransformReader` around the adapter):
- the adapter's ``finetune_transform`` (by default its pretraining transform; the medical adapters add
  RandAugment-style ops of magnitude ``randaugment_magnitude``);
- ``auto_augment`` (e.g. ``rand-m9-mstd0.5-inc1``): timm's ``rand_augment_transform`` on the
  un-normalized image, before normalization as in MAE. It needs an RGB 2-D image (PIL); for other
  inputs (one channel, band groups, time series, microscopy channels, volumes) it is skipped with a
  warning, once per process. Intensities are quantized to 8 bits for it (as PIL images are).

Per batch, in the training loop (:func:`erase_batch`, :class:`BatchMixing`), for any input whose last two
axes are ``(H, W)`` (``(B, C, H, W)``, time series ``(B, T, C, H, W)``, volumes ``(B, C, D, H, W)``: the
leading axes are flattened into channels, so a box spans every channel, frame or slice):
- random erasing (timm ``RandomErasing``): with probability ``erase_prob`` per sample, ``erase_count`` boxes
  of 2-33 % of the area filled with N(0, 1) noise (``pixel`` mode) on the normalized input;
- mixup / cutmix (timm ``Mixup``, batch mode): the batch mixed with its reverse with one lambda drawn
  from Beta(alpha, alpha) (cutmix: a box, lambda corrected to its area); targets become
  ``lam * smooth(y) + (1 - lam) * smooth(y_reversed)``. A pixel-validity mask is mixed alike (mixup: valid
  where both are; cutmix: the box's validity comes with its pixels). An odd batch's last sample is not mixed.
"""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from mae_domains.data.sample import NormStats, Sample

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@contextmanager
def seeded_python_and_numpy(seed: int) -> Iterator[None]:
    """Seed Python's ``random`` and NumPy's global RNG (timm's augmentations draw from them), then restore."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def rand_augment(image: np.ndarray, policy: str, seed: int, mean: tuple[float, ...] = IMAGENET_MEAN) -> np.ndarray:
    """timm's RandAugment ``policy`` on a ``(3, H, W)`` float image in [0, 1] (seeded), as float32 in [0, 1].
    Hyper-parameters as timm's ``create_transform`` gives MAE: translation 45 % of the shorter side,
    fill colour ``mean``, bicubic interpolation."""
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.transforms import str_to_pil_interp

    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"RandAugment needs an RGB image (3, H, W), got shape {tuple(image.shape)}")
    h, w = image.shape[1:]
    hparams = {"translate_const": int(min(h, w) * 0.45), "img_mean": tuple(min(255, round(255 * m)) for m in mean),
               "interpolation": str_to_pil_interp("bicubic")}
    transform = rand_augment_transform(policy, hparams)
    pil = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0), "RGB")
    with seeded_python_and_numpy(seed):
        out = transform(pil)
    return np.asarray(out, dtype=np.float32).transpose(2, 0, 1) / 255.0


def auto_augment_policy(settings: Mapping[str, Any]) -> str:
    """The ``auto_augment`` setting, "" when off (None, "", "none")."""
    policy = settings.get("auto_augment") or ""
    return "" if str(policy).lower() == "none" else str(policy)


class FinetuneTransformReader:
    """An adapter whose training transform is its fine-tuning transform for ``settings`` (picklable)."""

    def __init__(self, adapter: Any, settings: Mapping[str, Any]) -> None:
        self.adapter = adapter
        self.settings = dict(settings)
        self.warned = False

    def base_transform(self, sample: Sample, seed: int, stats: NormStats | None) -> Sample:
        hook = getattr(self.adapter, "finetune_transform", None)
        if hook is None:  # a duck-typed adapter without the hook: its training transform
            return self.adapter.transform(sample, seed, True, stats)
        return hook(sample, seed, stats, dict(self.settings))

    def transform(self, sample: Sample, seed: int, train: bool, stats: NormStats | None) -> Sample:
        if not train:
            return self.adapter.transform(sample, seed, False, stats)
        policy = auto_augment_policy(self.settings)
        if not policy:
            return self.base_transform(sample, seed, stats)
        raw = self.base_transform(sample, seed, None)  # RandAugment acts before normalization
        if raw.image.ndim != 3 or raw.image.shape[0] != 3:
            if not self.warned:
                self.warned = True
                log.warning("auto_augment=%s skipped: RandAugment needs RGB 2-D images, adapter %s gives %s",
                            policy, getattr(self.adapter, "name", type(self.adapter).__name__), tuple(raw.image.shape))
            return self.base_transform(sample, seed, stats)
        mean = tuple(stats.mean) if stats is not None and len(stats.mean) == 3 else IMAGENET_MEAN
        pixels = rand_augment(raw.image, policy, (seed * 7919 + 0xA11) % (2**63), mean)
        if stats is not None:
            pixels = stats.normalize(pixels)
        return Sample(pixels, raw.meta, raw.valid, raw.label)

    def __getattr__(self, name: str) -> Any:
        if name in ("adapter", "settings", "warned"):  # not set yet (unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.adapter, name)

    def __getstate__(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.adapter = state["adapter"]
        self.settings = state["settings"]
        self.warned = False


def as_planes(x: torch.Tensor) -> torch.Tensor:
    """``(B, ..., H, W)`` as a ``(B, P, H, W)`` view (leading axes flattened into planes)."""
    if x.ndim < 3:
        raise ValueError(f"expected (B, ..., H, W) images, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1, *x.shape[-2:])


def erase_batch(images: torch.Tensor, probability: float, mode: str = "pixel", count: int = 1) -> torch.Tensor:
    """timm's RandomErasing on every sample of a normalized batch, in place (Python's ``random`` draws the
    boxes, torch the noise)."""
    from timm.data.random_erasing import RandomErasing

    if probability <= 0:
        return images
    eraser = RandomErasing(probability=probability, mode=mode, max_count=count, device=str(images.device))
    planes = as_planes(images)
    eraser(planes)
    if planes.data_ptr() != images.data_ptr():  # a copy (non-contiguous input): write it back
        images.copy_(planes.reshape(images.shape))
    return images


class BatchMixing:
    """Mixup / cutmix of a batch and its targets (timm ``Mixup`` in batch mode)."""

    def __init__(self, num_classes: int, mixup: float = 0.0, cutmix: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.0, multi_label: bool = False) -> None:
        from timm.data.mixup import Mixup

        self.num_classes = num_classes
        self.mixer = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=prob, switch_prob=switch_prob, mode="batch",
                           label_smoothing=label_smoothing, num_classes=num_classes, multi_label=multi_label)

    @property
    def enabled(self) -> bool:
        return self.mixer.mixup_alpha > 0 or self.mixer.cutmix_alpha > 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float]:
        """``(mixed images, soft targets (B, classes), mixed validity, lambda)``; ``images`` ``(B, ..., H, W)``.

        The validity mask and a tracer plane (1 in the first half of the batch) are mixed with the pixels as
        extra planes, so the mask follows the same box and the tracer of sample 0 reads back the lambda used
        (after cutmix's area correction)."""
        n = images.shape[0] - images.shape[0] % 2
        mixed = images.clone()
        targets = self.targets(labels, 1.0)
        if n < 2:
            return mixed, targets, valid, 1.0
        planes = as_planes(images[:n]).float()
        h, w = planes.shape[-2:]
        tracer = torch.zeros(n, 1, h, w, device=images.device)
        tracer[: n // 2] = 1.0
        extra = [tracer]
        if valid is not None:
            extra.append(as_planes(valid[:n].reshape(n, -1, h, w)).float())
        stacked = torch.cat([planes, *extra], dim=1)
        stacked, soft = self.mixer(stacked, labels[:n])
        lam = float(stacked[0, planes.shape[1]].mean())
        mixed[:n] = stacked[:, : planes.shape[1]].reshape(images[:n].shape).to(images.dtype)
        targets[:n] = soft
        if valid is not None:
            mixed_valid = valid.clone()
            mixed_valid[:n] = (stacked[:, planes.shape[1] + 1:] > 1.0 - 1e-4).reshape(valid[:n].shape)
            valid = mixed_valid
        return mixed, targets, valid, lam

    def targets(self, labels: torch.Tensor, lam: float) -> torch.Tensor:
        """Smoothed targets mixed with their reverse at ``lam`` (timm's ``mixup_target``)."""
        from timm.data.mixup import mixup_target

        return mixup_target(labels, self.num_classes, lam, self.mixer.label_smoothing, self.mixer.multi_label)
