"""RandAugment-style augmentation of one-channel float images, for downstream fine-tuning only.

timm's ``rand_augment_transform`` works on 8-bit PIL images; medical frames are float32 in [0, 1] with an
optional validity mask, so this is an equivalent seeded set of ops on ``(H, W)`` arrays. As in timm's
RandAugment (``rand-m{M}-n2``), ``num_ops`` ops are drawn uniformly (with replacement) and each is applied
with probability 0.5, at the fixed magnitude ``M`` on timm's 0-10 scale (no magnitude noise). The ops and
their ranges at magnitude 10 follow timm: rotate 30 degrees, shear 0.3, translate 45% of the side,
brightness / contrast / sharpness factor 1 +- 0.9, posterize down to 4 bits, solarize threshold down to 0,
plus auto-contrast, equalize and identity. Colour and invert are left out (a gray radiograph has no
colour, and inverting would undo the MONOCHROME1 display). Geometric ops move the validity mask with the
image; pixels brought in from outside the frame are 0, and invalid when the image has a validity mask (an
image without one keeps none, as timm fills with a constant). Same seed, same result.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

MAX_LEVEL = 10.0
Op = Callable[[np.ndarray, np.ndarray | None, float, np.random.Generator], tuple[np.ndarray, np.ndarray | None]]


def _signed(rng: np.random.Generator, value: float) -> float:
    return value if rng.random() < 0.5 else -value


def _warp(image: np.ndarray, valid: np.ndarray | None, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = image.shape
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    base = np.ones_like(image, np.uint8) if valid is None else valid.astype(np.uint8)
    moved = cv2.warpAffine(base, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0).astype(bool)
    return np.where(moved, out, 0.0).astype(np.float32), moved


def rotate(image, valid, level, rng):
    h, w = image.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), _signed(rng, 30.0 * level), 1.0)
    return _warp(image, valid, matrix)


def shear_x(image, valid, level, rng):
    s = _signed(rng, 0.3 * level)
    h, _ = image.shape
    return _warp(image, valid, np.float32([[1, s, -s * (h - 1) / 2], [0, 1, 0]]))


def shear_y(image, valid, level, rng):
    s = _signed(rng, 0.3 * level)
    _, w = image.shape
    return _warp(image, valid, np.float32([[1, 0, 0], [s, 1, -s * (w - 1) / 2]]))


def translate_x(image, valid, level, rng):
    return _warp(image, valid, np.float32([[1, 0, _signed(rng, 0.45 * level * image.shape[1])], [0, 1, 0]]))


def translate_y(image, valid, level, rng):
    return _warp(image, valid, np.float32([[1, 0, 0], [0, 1, _signed(rng, 0.45 * level * image.shape[0])]]))


def _values(image: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return image if valid is None else image[valid]


def brightness(image, valid, level, rng):
    return np.clip(image * (1.0 + _signed(rng, 0.9 * level)), 0, 1), valid


def contrast(image, valid, level, rng):
    values = _values(image, valid)
    mean = float(values.mean()) if values.size else 0.0
    return np.clip(mean + (image - mean) * (1.0 + _signed(rng, 0.9 * level)), 0, 1), valid


def sharpness(image, valid, level, rng):
    blurred = cv2.GaussianBlur(image, (3, 3), 0)
    return np.clip(blurred + (image - blurred) * (1.0 + _signed(rng, 0.9 * level)), 0, 1), valid


def posterize(image, valid, level, rng):
    levels = 2 ** (8 - int(round(4 * level)))
    return np.floor(image * (levels - 1) + 0.5) / (levels - 1), valid


def solarize(image, valid, level, rng):
    threshold = 1.0 - level
    return np.where(image >= threshold, 1.0 - image, image), valid


def auto_contrast(image, valid, level, rng):
    values = _values(image, valid)
    if not values.size or values.max() <= values.min():
        return image, valid
    low, high = float(values.min()), float(values.max())
    return np.clip((image - low) / (high - low), 0, 1), valid


def equalize(image, valid, level, rng):
    values = _values(image, valid)
    if not values.size:
        return image, valid
    ranks = np.sort(values.ravel())
    out = np.searchsorted(ranks, image, side="right") / ranks.size
    return np.clip(out, 0, 1), valid


def identity(image, valid, level, rng):
    return image, valid


OPS: dict[str, Op] = {
    "identity": identity, "auto_contrast": auto_contrast, "equalize": equalize, "rotate": rotate,
    "posterize": posterize, "solarize": solarize, "contrast": contrast, "brightness": brightness,
    "sharpness": sharpness, "shear_x": shear_x, "shear_y": shear_y, "translate_x": translate_x,
    "translate_y": translate_y,
}


def rand_augment(image: np.ndarray, valid: np.ndarray | None, magnitude: float, seed: int,
                 num_ops: int = 2, prob: float = 0.5) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(image, valid, applied op names)``: ``num_ops`` random ops of ``magnitude`` (0-10; 0 = unchanged)
    on a ``(H, W)`` float image in [0, 1]; invalid pixels stay 0."""
    if magnitude <= 0:
        return image, valid, []
    level = min(float(magnitude), MAX_LEVEL) / MAX_LEVEL
    rng = np.random.default_rng(seed)
    names = list(OPS)
    applied: list[str] = []
    image = image.astype(np.float32)
    had_mask = valid is not None
    for _ in range(num_ops):
        name = names[int(rng.integers(len(names)))]
        if rng.random() >= prob:
            continue
        image, valid = OPS[name](image, valid, level, rng)
        applied.append(name)
    image = image.astype(np.float32)
    if not had_mask:
        return image, None, applied
    assert valid is not None
    return np.where(valid, image, 0.0).astype(np.float32), valid, applied
