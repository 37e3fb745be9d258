"""Masking policies: seeded determinism, batch independence, per-axis structure, invalid tokens."""

import pytest
import torch

from mae_domains.grid import GridLayout, continuous_axis, ordinal_axis, spatial_axis
from mae_domains.masking import ColorNoise, TokenMasker, build_masker
from mae_domains.masking.indices import noise_from_seeds, random_masking

LAYOUT = GridLayout((ordinal_axis("group", 3), spatial_axis("y", 4), spatial_axis("x", 6)))


def maskers(tmp_path):
    return [
        TokenMasker(),
        TokenMasker("consistent", "group"),
        TokenMasker("independent", "group"),
        TokenMasker("stratified", "group"),
        build_masker("random", color="green", cache_dir=tmp_path),
        build_masker("consistent", "group", color="red", cache_dir=tmp_path),
        build_masker("independent", "group", color="blue", cache_dir=tmp_path),
        build_masker("stratified", "group", color="blue", cache_dir=tmp_path),
    ]


def test_random_masking_with_seeds_equals_mae_masking():
    got = TokenMasker()(LAYOUT, 0.75, 2, seeds=[11, 12])
    ref = random_masking(2, 72, 0.75, noise=noise_from_seeds([11, 12], 72))
    assert torch.equal(got.mask, ref.mask) and torch.equal(got.ids_keep, ref.ids_keep)


def test_seeded_masks_identical_across_runs_and_batch_compositions(tmp_path):
    for masker in maskers(tmp_path):
        a = masker(LAYOUT, 0.75, 3, seeds=[7, 8, 9])
        b = masker(LAYOUT, 0.75, 3, seeds=[7, 8, 9])
        assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_keep, b.ids_keep), masker
        c = masker(LAYOUT, 0.75, 2, seeds=[42, 8])  # sample with seed 8 in another batch, other position
        assert torch.equal(a.mask[1], c.mask[1]), masker
        assert torch.equal(a.ids_keep[1], c.ids_keep[1]), masker
        assert not torch.equal(a.mask[0], a.mask[2]), masker


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_consistent_masking_same_spatial_mask_across_axis(ratio, tmp_path):
    for masker in [TokenMasker("consistent", "group"), build_masker("consistent", "group", color="green", cache_dir=tmp_path)]:
        m = masker(LAYOUT, ratio, 4, seeds=[1, 2, 3, 4])
        per_group = m.mask.reshape(4, 3, 24)
        assert torch.equal(per_group[:, 0], per_group[:, 1]) and torch.equal(per_group[:, 0], per_group[:, 2])
        kept_per_group = 24 - per_group.sum(-1)
        assert (kept_per_group == int(24 * (1 - ratio))).all()
        assert m.num_keep == 3 * int(24 * (1 - ratio))


def test_stratified_masking_same_count_different_masks():
    """``stratified`` (``independent`` in 0.1.0): an own mask per group, the same kept count in each."""
    m = TokenMasker("stratified", "group")(LAYOUT, 0.75, 4, seeds=[1, 2, 3, 4])
    per_group = m.mask.reshape(4, 3, 24)
    assert (per_group.sum(-1) == 24 - 6).all()
    assert not torch.equal(per_group[:, 0], per_group[:, 1])


def test_independent_masking_is_satmae_uniform_over_group_and_location():
    """SatMAE's independent masking is MAE random masking over all G x L tokens (same draws for the same
    noise), so only the total kept count is fixed: ``int(72 * 0.25) = 18``."""
    m = TokenMasker("independent", "group")(LAYOUT, 0.75, 2, seeds=[11, 12])
    ref = random_masking(2, 72, 0.75, noise=noise_from_seeds([11, 12], 72))
    assert torch.equal(m.mask, ref.mask) and m.num_keep == 18


def test_consistent_across_time_on_a_time_grid():
    layout = GridLayout((continuous_axis("time", 3), spatial_axis("y", 4), spatial_axis("x", 4)))
    m = TokenMasker("consistent", ["time"])(layout, 0.75, 2)
    tube = m.mask.reshape(2, 3, 16)
    assert torch.equal(tube[:, 0], tube[:, 2])


def test_ids_are_consistent_with_mask(tmp_path):
    for masker in maskers(tmp_path):
        m = masker(LAYOUT, 0.75, 2, seeds=[3, 4])
        assert (torch.gather(m.mask, 1, m.ids_keep) == 0).all()
        assert (torch.gather(m.mask, 1, m.ids_masked) == 1).all()
        restored = torch.gather(torch.cat([m.ids_keep, m.ids_masked], 1), 1, m.ids_restore)
        assert torch.equal(restored, torch.arange(72).expand(2, -1))


def test_invalid_tokens_always_masked_and_kept_count_fixed(tmp_path):
    valid = torch.ones(3, 72, dtype=torch.bool)
    valid[0, :30] = False
    valid[1, ::3] = False
    for masker in maskers(tmp_path):
        m = masker(LAYOUT, 0.5, 3, seeds=[5, 6, 7], valid=valid)
        assert m.num_keep == masker.num_keep(LAYOUT, 0.5)
        assert (m.mask[~valid] == 1).all(), masker


def test_unknown_mode_and_missing_axis_are_errors():
    with pytest.raises(ValueError):
        TokenMasker("tube")
    with pytest.raises(ValueError):
        TokenMasker("consistent")
    with pytest.raises(KeyError):
        TokenMasker("consistent", "channel")(LAYOUT, 0.75, 1)


def test_unseeded_masks_follow_torch_rng():
    torch.manual_seed(0)
    a = TokenMasker()(LAYOUT, 0.75, 2)
    torch.manual_seed(0)
    b = TokenMasker()(LAYOUT, 0.75, 2)
    assert torch.equal(a.mask, b.mask)
    assert isinstance(ColorNoise(color="red").settings.key(), str)
