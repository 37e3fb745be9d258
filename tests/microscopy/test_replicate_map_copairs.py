"""Replicate mAP agrees with copairs (the Broad's reference implementation) on the same profiles."""

import numpy as np
import pandas as pd
import pytest
from copairs.map import average_precision as copairs_ap

from mae_microscopy.bio_metrics import replicate_map


def profiles(seed: int = 0):
    """6 perturbations x 4 replicate wells (signal + noise) and 8 control wells, 32 features."""
    rng = np.random.default_rng(seed)
    groups = [f"compound{g}" for g in range(6) for _ in range(4)] + ["DMSO"] * 8
    centres = {g: rng.normal(0, 1, 32) for g in set(groups)}
    strength = {g: 0.2 * i for i, g in enumerate(sorted(set(groups)))}  # from no signal to a clear one
    features = np.stack([strength[g] * centres[g] + rng.normal(0, 1, 32) for g in groups])
    return features, groups


def test_replicate_map_matches_copairs():
    features, groups = profiles()
    ours = replicate_map(features, groups, controls=["DMSO"], negatives="others")
    meta = pd.DataFrame({"group": groups})
    theirs = copairs_ap(meta, features, pos_sameby=["group"], pos_diffby=[], neg_sameby=[],
                        neg_diffby=["group"], progress_bar=False)
    theirs = theirs[theirs["group"] != "DMSO"]  # control wells are not queried, only retrieved as negatives
    queried = np.array([g != "DMSO" for g in groups])
    np.testing.assert_allclose(ours.per_query[queried], theirs["average_precision"].to_numpy(), rtol=1e-9)
    per_group = theirs.groupby("group")["average_precision"].mean()
    assert ours.per_group == pytest.approx(per_group.to_dict(), rel=1e-9)
    assert ours.map == pytest.approx(per_group.mean(), rel=1e-9)
    assert 0.2 < ours.map < 1.0  # signal from none to clear: neither chance nor perfect
