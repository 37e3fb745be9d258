"""SatMAE's independent masking (``models_mae_group_channels.py`` / ``models_mae_temporal.py``): MAE random
masking over the flattened G x L (or T x L) tokens, so the kept count per group is hypergeometric; the
stratified variant keeps the same count in every group; consistent masking one spatial mask for all."""

from __future__ import annotations

import math

import pytest
import torch

from mae_domains.grid import GridLayout, continuous_axis, ordinal_axis, spatial_axis
from mae_domains.masking import TokenMasker, build_masker

SAMPLES = 400


def kept_per_slice(masker, layout, ratio=0.75):
    slices = layout.shape[0]
    m = masker(layout, ratio, SAMPLES, seeds=list(range(SAMPLES)))
    return (1 - m.mask).reshape(SAMPLES, slices, -1).sum(-1)  # (samples, slices)


@pytest.mark.parametrize("axis", ["group", "time"])
def test_independent_kept_count_per_slice_varies_with_the_hypergeometric_law(axis):
    """3 slices x 144 tokens at 0.75: 108 kept of 432; per slice mean 108/3 = 36 and variance
    ``n K (N - K) (N - n) / (N^2 (N - 1))`` with N = 432, K = 144 per slice, n = 108 drawn."""
    make = ordinal_axis if axis == "group" else continuous_axis
    layout = GridLayout((make(axis, 3), spatial_axis("y", 12), spatial_axis("x", 12)))
    kept = kept_per_slice(TokenMasker("independent", axis), layout).float()
    assert (kept.sum(-1) == 108).all()  # int(432 * 0.25) in total, as SatMAE's random_masking
    total, per_slice, drawn = 432, 144, 108
    mean = drawn * per_slice / total
    std = math.sqrt(drawn * per_slice * (total - per_slice) * (total - drawn) / (total**2 * (total - 1)))
    assert mean == 36 and std == pytest.approx(4.25, abs=0.01)
    assert kept.mean().item() == pytest.approx(mean, abs=0.35)  # standard error about 0.12
    assert kept.std().item() == pytest.approx(std, rel=0.15)
    assert kept.min() < 30 and kept.max() > 42  # the count varies, well beyond +-6 of the mean
    assert 15 <= kept.min() and kept.max() <= 57  # SatMAE's paper setting spans about 20-54


def test_stratified_keeps_the_same_count_in_every_group():
    layout = GridLayout((ordinal_axis("group", 3), spatial_axis("y", 12), spatial_axis("x", 12)))
    kept = kept_per_slice(TokenMasker("stratified", "group"), layout)
    assert (kept == int(144 * 0.25)).all()
    consistent = TokenMasker("consistent", "group")(layout, 0.75, 4, seeds=[1, 2, 3, 4]).mask.reshape(4, 3, 144)
    assert (consistent == consistent[:, :1]).all()


def test_the_new_meaning_of_independent_is_said_once(caplog):
    import mae_domains.masking.policies as policies

    policies._told_about_independent = False
    with caplog.at_level("INFO", logger="mae_domains.masking.policies"):
        build_masker("independent", "group")
        build_masker("independent", "group")
        build_masker("stratified", "group")
    notes = [r.getMessage() for r in caplog.records if "mask.strategy=stratified" in r.getMessage()]
    assert len(notes) == 1 and "kept count per group varies" in notes[0]
