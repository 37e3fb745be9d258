"""Anomaly scoring on ``medical.ultrasound`` goes through the adapter's ``model_inputs``: the encoder sees the
blurred frame, the error is measured against the sharp one, inside the scan region only."""

from __future__ import annotations

import numpy as np
import torch

from mae_domains.config import load_config
from mae_domains.evaluation.anomaly import anomaly_scores, mask_seed, reconstruction_error
from mae_domains.grid import GridBatch
from mae_domains.registry import get_adapter
from mae_medical.blur import gaussian_blur

MICRO = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
         "model.decoder_depth=1", "model.decoder_num_heads=4"]


def test_anomaly_scores_use_blurred_inputs_and_sharp_targets():
    config = load_config(None, ["adapter=medical.ultrasound", *MICRO])
    adapter = get_adapter("medical.ultrasound", config.data.options).bind(config)
    torch.manual_seed(0)
    model = adapter.build_model(config.model, config.mask).eval()
    samples = [adapter.transform(adapter.synthetic_sample(s), 0, False, None) for s in range(4)]
    batch = {"image": torch.from_numpy(np.stack([s.image for s in samples])),
             "valid": torch.from_numpy(np.stack([s.valid for s in samples])),
             "label": torch.tensor([0, 1, 0, 1]), "sample_id": [f"us{s}" for s in range(4)]}
    scores, _, _, _ = anomaly_scores(model, [batch], adapter.model_inputs, masks=2, device="cpu")
    sharp = batch["image"]
    expected = []
    for k in range(2):
        grid = GridBatch(gaussian_blur(sharp, adapter.blur_sigma), batch["valid"], {}, sharp)
        with torch.no_grad():
            expected.append(reconstruction_error(model(grid, mask_seeds=[mask_seed(0, k)] * 4)).numpy())
    np.testing.assert_allclose(scores, np.mean(expected, axis=0), rtol=1e-5)
    unblurred, _, _, _ = anomaly_scores(model, [batch], lambda b, d: {"images": GridBatch(b["image"], b["valid"]),
                                                                      "mask_seeds": b["mask_seed"]},
                                        masks=2, device="cpu")
    assert not np.allclose(scores, unblurred)
