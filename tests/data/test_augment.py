"""The core's seeded crop-and-flip moves the validity mask with the pixels; normalization zeroes nodata."""

import pickle

import cv2
import numpy as np

from mae_domains.data.augment import CropAndFlip, normalize_valid
from mae_domains.data.sample import NormStats


def field(size=40, seed=0, width=None):
    rng = np.random.default_rng(seed)
    valid = rng.random((size, width or size)) > 0.3
    image = np.stack([np.where(valid, 5.0, 0.0), np.where(valid, -2.0, 0.0)]).astype(np.float32)
    return image, valid


def test_mask_follows_the_crop_and_the_draws_are_seeded():
    image, valid = field()
    augment = CropAndFlip(24, scale=(0.2, 1.0), hflip=True, vflip=True, interpolation=cv2.INTER_NEAREST)
    outputs = []
    for seed in range(6):
        out, mask = augment(image, valid, seed, train=True)
        assert out.shape == (2, 24, 24) and mask.shape == (24, 24) and mask.dtype == bool
        np.testing.assert_array_equal(out[0], np.where(mask, 5.0, 0.0))  # nodata stayed where it was
        np.testing.assert_array_equal(out[1], np.where(mask, -2.0, 0.0))
        again, again_mask = pickle.loads(pickle.dumps(augment))(image, valid, seed, train=True)
        assert np.array_equal(out, again) and np.array_equal(mask, again_mask)  # same seed, any worker
        outputs.append(mask)
    assert len({m.tobytes() for m in outputs}) == 6  # other seeds, other crops


def test_flips_only_mirror_with_a_full_crop():
    image, valid = field(16)
    augment = CropAndFlip(16, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=True, vflip=False,
                          interpolation=cv2.INTER_NEAREST)
    seen = set()
    for seed in range(8):
        _, mask = augment(image, valid, seed, train=True)
        assert np.array_equal(mask, valid) or np.array_equal(mask, valid[:, ::-1])
        seen.add(np.array_equal(mask, valid))
    assert seen == {True, False}


def test_evaluation_is_a_centre_crop_whatever_the_seed():
    image, valid = field(24, width=40)  # the shorter side is already the size: no resize, a centre crop
    augment = CropAndFlip(24, interpolation=cv2.INTER_NEAREST)
    a, mask_a = augment(image, valid, 1, train=False)
    b, mask_b = augment(image, valid, 2, train=False)
    assert np.array_equal(a, b) and np.array_equal(mask_a, valid[:, 8:32]) and np.array_equal(mask_a, mask_b)


def test_normalize_valid_sets_nodata_to_the_mean():
    image = np.array([[[1.0, 3.0], [100.0, 5.0]]], np.float32)
    valid = np.array([[True, True], [False, True]])
    out = normalize_valid(image, valid, NormStats([3.0], [2.0]))
    np.testing.assert_array_equal(out, [[[-1.0, 0.0], [0.0, 1.0]]])
