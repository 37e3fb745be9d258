"""The ``volume_probe`` protocol: crops tile the volume, the volume embedding is the mean of the crops'
valid-token means, and the probe separates two clearly different kinds of phantom volumes."""

from __future__ import annotations

import torch

from mae_domains.config import load_config
from mae_domains.data.sample import Sample
from mae_domains.evaluation.runner import run_protocol
from mae_domains.evaluation.volume_probe import VolumeLoader, crop_starts, volume_embedding
from mae_domains.grid import GridBatch
from mae_medical.ct import CTAdapter
from mae_medical.volume_phantoms import abdomen_phantom
from mae_medical.volume_transforms import intensity_to_unit

SPACING = [2.0, 1.5, 1.5]


def encoder():
    adapter = CTAdapter({"cache_dir": "none"})
    adapter.bind(load_config(None, ["adapter=medical.ct", "model.preset=micro", "model.img_size=16",
                                    "model.patch_size=4"]))
    torch.manual_seed(0)
    return adapter.build_model(adapter.config.model, adapter.config.mask).encoder.eval()


def test_crop_starts_cover_the_axis():
    assert crop_starts(24, 16, 8) == [0, 8]
    assert crop_starts(30, 16, 16) == [0, 14]
    assert crop_starts(10, 16, 16) == [0]


def test_volume_embedding_is_the_mean_of_crop_means_and_ignores_padding():
    enc = encoder()
    image = torch.rand(1, 24, 16, 16)
    got = volume_embedding(enc, image, SPACING, roi=16, stride=8)
    meta = {"spacing": torch.tensor([SPACING], dtype=torch.float64)}
    crops = [enc.forward_grid(GridBatch(image[None, :, z:z + 16], None, meta)).tokens.mean(1)[0] for z in (0, 8)]
    torch.testing.assert_close(got, torch.stack(crops).mean(0), atol=1e-5, rtol=1e-5)
    small = torch.rand(1, 8, 16, 16)  # padded to 16 along z: the padded half is invalid
    a = volume_embedding(enc, small, SPACING, roi=16, stride=16)
    valid_half = enc.forward_grid(GridBatch(torch.nn.functional.pad(small, (0, 0, 0, 0, 0, 8))[None], None, meta))
    torch.testing.assert_close(a, valid_half.tokens[0, :32].mean(0), atol=1e-5, rtol=1e-5)  # z-rows 0-1 of 4


def test_probe_separates_two_kinds_of_volumes():
    """Class 1 phantoms have a dense (contrast-filled) organ: 600 HU instead of 150; frozen random micro
    encoder (a pipeline check on an easy task, not a quality claim)."""
    def sample(seed: int, label: int) -> Sample:
        hu, organ = abdomen_phantom(seed, (16, 24, 24))
        if label:
            hu[organ > 0] = 600.0
        return Sample(intensity_to_unit(hu, "wide")[None], {"source": f"p{seed}", "spacing": SPACING})

    train = VolumeLoader(lambda ref: sample(*ref), [((s, s % 2), s % 2) for s in range(8)])
    test = VolumeLoader(lambda ref: sample(*ref), [((100 + s, s % 2), s % 2) for s in range(4)])
    records = run_protocol("volume_probe", train, test, encoder=encoder(), settings={"roi": 16, "stride": 8})
    top1 = [r.value for r in records if r.metric == "top1"][0]
    assert top1 == 1.0
