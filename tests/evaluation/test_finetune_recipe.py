"""MAE's fine-tuning recipe: mixup / cutmix targets and pixels against the drawn lambda, the label-smoothing
and soft-target losses against their formulas, random erasing, RandAugment on RGB images (skipped for the
rest), the trained position table and fc_norm, and the protocol end to end with the recipe's settings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_domains.config import load_config
from mae_domains.data.sample import NormStats, Sample
from mae_domains.evaluation.eval_defaults import RunEvalDefaults
from mae_domains.evaluation.finetune import FinetuneConfig, GridClassifier, classification_loss, finetune
from mae_domains.evaluation.finetune_transforms import (
    BatchMixing, FinetuneTransformReader, erase_batch, rand_augment, seeded_python_and_numpy,
)
from mae_domains.evaluation.runner import run_protocol
from mae_domains.grid import GridBatch
from mae_domains.optim import param_groups
from tests.evaluation.helpers import GRID_KINDS, class_signal, dict_loader, micro_encoder, micro_grid_mae, pattern_images

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "image_vit_base.yaml"


def smoothed(labels: torch.Tensor, classes: int, eps: float) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).float() * (1 - eps) + eps / classes


# ----- mixup / cutmix -----------------------------------------------------------------------------
def test_mixup_targets_sum_to_one_and_mix_with_the_drawn_lambda():
    images, labels = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 1, 0, 2])
    mixing = BatchMixing(3, mixup=0.8, cutmix=0.0, label_smoothing=0.1)
    with seeded_python_and_numpy(5):
        mixed, targets, _, lam = mixing(images, labels)
    replay = np.random.RandomState(5)
    replay.rand()  # timm's "mix at all?" draw
    drawn = replay.beta(0.8, 0.8)
    assert lam == pytest.approx(drawn, abs=1e-6) and 0 < lam < 1
    torch.testing.assert_close(mixed, drawn * images + (1 - drawn) * images.flip(0), atol=1e-5, rtol=1e-5)
    one_hot = smoothed(labels, 3, 0.1)
    torch.testing.assert_close(targets, drawn * one_hot + (1 - drawn) * one_hot.flip(0), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(targets.sum(1), torch.ones(6))


@pytest.mark.parametrize("shape", [(3, 16, 16), (2, 3, 16, 16)], ids=["image", "time_series"])
def test_cutmix_pastes_one_box_through_every_plane_and_weights_targets_by_its_area(shape):
    torch.manual_seed(0)
    images, labels = torch.randn(4, *shape), torch.tensor([0, 1, 1, 0])
    valid = torch.ones(4, 16, 16, dtype=torch.bool)
    valid[3, :, 8:] = False  # sample 3 (mixed into sample 0) has no data on its right half
    mixing = BatchMixing(2, mixup=0.0, cutmix=1.0)
    with seeded_python_and_numpy(0):  # a box of 27 % of the image
        mixed, targets, mixed_valid, lam = mixing(images, labels, valid)
    from_other = (mixed != images).reshape(4, -1, 16, 16)
    box = from_other.any(0).any(0)  # (H, W): the pasted box
    assert box.any() and (from_other == box).all(), "one box, through every channel and frame"
    assert torch.equal(mixed[..., box], images.flip(0)[..., box])
    assert lam == pytest.approx(1 - box.float().mean().item(), abs=1e-6)  # lambda corrected to the box's area
    torch.testing.assert_close(targets, lam * smoothed(labels, 2, 0) + (1 - lam) * smoothed(labels.flip(0), 2, 0))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
    assert torch.equal(mixed_valid[0], torch.where(box, valid[3], valid[0]))  # validity travels with the pixels


def test_an_odd_batch_leaves_its_last_sample_unmixed():
    images, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    with seeded_python_and_numpy(2):
        mixed, targets, _, lam = BatchMixing(3, mixup=0.8, label_smoothing=0.1)(images, labels)
    assert lam < 1
    assert torch.equal(mixed[4], images[4])
    torch.testing.assert_close(targets[4], smoothed(labels[4:], 3, 0.1)[0])


def test_multilabel_targets_mix_as_dense_vectors():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    with seeded_python_and_numpy(3):
        _, targets, _, lam = BatchMixing(2, mixup=0.8, multi_label=True)(torch.randn(4, 1, 8, 8), labels)
    torch.testing.assert_close(targets, lam * labels + (1 - lam) * labels.flip(0), atol=1e-6, rtol=1e-6)


# ----- losses --------------------------------------------------------------------------------------
def test_label_smoothing_loss_is_the_formula():
    torch.manual_seed(0)
    logits, labels, eps = torch.randn(6, 4), torch.tensor([0, 3, 1, 2, 2, 0]), 0.1
    logp = torch.log_softmax(logits, dim=1)
    expected = (-(1 - eps) * logp[torch.arange(6), labels] - eps * logp.mean(dim=1)).mean()
    torch.testing.assert_close(classification_loss(logits, labels, eps), expected)
    torch.testing.assert_close(classification_loss(logits, labels, 0.0), -logp[torch.arange(6), labels].mean())
    soft = torch.softmax(torch.randn(6, 4), dim=1)
    torch.testing.assert_close(classification_loss(logits, soft, soft=True), -(soft * logp).sum(1).mean())


# ----- random erasing and RandAugment ------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 3, 32, 32)], ids=["image", "time_series"])
def test_erase_prob_fills_one_box_per_sample_with_noise(shape):
    images = torch.zeros(6, *shape)
    with seeded_python_and_numpy(0):
        torch.manual_seed(0)
        erase_batch(images, probability=1.0, mode="pixel", count=1)
    planes = images.reshape(6, -1, 32, 32)
    for sample in planes:
        box = sample[0] != 0
        assert (sample != 0).eq(box).all()  # the same box on every channel and frame
        ys, xs = box.nonzero(as_tuple=True)
        area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert area == box.sum() and 0.02 * 1024 * 0.5 <= area <= 1024 / 3 * 1.2  # a rectangle of 2-33 %
    assert torch.equal(erase_batch(torch.zeros(2, *shape), probability=0.0), torch.zeros(2, *shape))


def rgb_adapter(channels: int = 3):
    from mae_domains.registry import get_adapter

    config = load_config(None, ["adapter=image", f"model.in_chans={channels}", "model.img_size=32", "model.patch_size=8"])
    return get_adapter("image").bind(config)


def test_randaugment_acts_on_rgb_images_before_normalization():
    adapter = rgb_adapter()
    sample = adapter.synthetic_sample(0)
    stats = NormStats([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    policy = {"auto_augment": "rand-m9-mstd0.5-inc1"}
    reader = FinetuneTransformReader(adapter, policy)
    out = reader.transform(sample, 7, True, stats)
    raw = adapter.transform(sample, 7, True, None)
    augmented = rand_augment(raw.image, policy["auto_augment"], (7 * 7919 + 0xA11) % (2**63), tuple(stats.mean))
    np.testing.assert_allclose(out.image, stats.normalize(augmented), atol=1e-6)
    np.testing.assert_array_equal(out.image, reader.transform(sample, 7, True, stats).image)  # seeded
    plain = FinetuneTransformReader(adapter, {}).transform(sample, 7, True, stats)
    changed = [not np.allclose(reader.transform(sample, s, True, stats).image,
                               FinetuneTransformReader(adapter, {}).transform(sample, s, True, stats).image, atol=1e-2)
               for s in range(6)]
    assert plain.image.shape == out.image.shape == (3, 32, 32) and sum(changed) >= 3
    evaluation = reader.transform(sample, 7, False, stats)  # never at test time
    np.testing.assert_array_equal(evaluation.image, adapter.transform(sample, 7, False, stats).image)


def test_randaugment_is_skipped_with_a_warning_for_non_rgb_inputs(caplog):
    adapter = rgb_adapter(channels=1)
    sample = adapter.synthetic_sample(1)
    stats = NormStats([0.5], [0.2])
    reader = FinetuneTransformReader(adapter, {"auto_augment": "rand-m9-mstd0.5-inc1"})
    with caplog.at_level(logging.WARNING):
        out = reader.transform(sample, 3, True, stats)
        reader.transform(sample, 4, True, stats)
    np.testing.assert_array_equal(out.image, adapter.transform(sample, 3, True, stats).image)
    assert sum("RandAugment needs RGB" in r.message for r in caplog.records) == 1  # once


def test_a_bad_randaugment_policy_is_refused():
    with pytest.raises(ValueError, match="not a timm RandAugment policy"):
        FinetuneConfig(auto_augment="rand-x9")
    assert FinetuneConfig(auto_augment="none").auto_augment == ""


# ----- position table and fc_norm ---------------------------------------------------------------------
def test_trained_position_table_starts_at_the_fixed_codes_and_is_an_undecayed_layer_0_parameter():
    model = GridClassifier(micro_encoder(), 2, pool="avg", fc_norm=True).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.forward_features(images)
        table = model.add_position_table(images)
        assert table.shape == (1, 4, 4, 64) and torch.equal(table, torch.zeros_like(table))
        torch.testing.assert_close(model.forward_features(images), before)  # zeros: the pretrained codes
        pooled = model.encoder.blocks(torch.cat([model.encoder.cls_token.expand(2, -1, -1),
                                                 model.encoder.embedding(GridBatch(images)).tokens], 1))[:, 1:].mean(1)
        torch.testing.assert_close(before, torch.nn.functional.layer_norm(pooled, (64,), eps=1e-6))  # a new fc_norm
    groups = param_groups(model, 0.05, layer_decay=0.65, depth=model.depth)
    by_name = {name: g for g in groups for name in g["param_names"]}
    assert by_name["pos_embed"]["layer_id"] == 0 and by_name["pos_embed"]["weight_decay"] == 0.0
    assert by_name["fc_norm.weight"]["layer_id"] == model.depth + 1
    with pytest.raises(ValueError, match="fine-tune and evaluate at one input size"):
        model.forward_features(torch.randn(1, 3, 16, 16))


def test_the_table_covers_the_spatial_axes_and_is_shared_along_the_others():
    make_embedding, shape, batch_fn = GRID_KINDS["temporal"]
    torch.manual_seed(0)
    model = GridClassifier(micro_grid_mae(make_embedding()).encoder, 2)
    batch = batch_fn({"image": torch.randn(2, *shape)}, torch.device("cpu"))
    assert model.add_position_table(batch).shape == (1, 1, 2, 2, 64)  # (time, y, x): one table for all frames


# ----- the protocol end to end with the recipe ---------------------------------------------------------
def recipe_settings(**changes) -> dict:
    """The finetune settings image_vit_base.yaml gives a run (through its eval section), with ``changes``."""
    section = load_config(RECIPE).to_dict()["eval"]
    settings = RunEvalDefaults(section).settings("finetune")
    assert settings["mixup"] == 0.8 and settings["layer_decay"] == 0.65 and settings["position_table"] == "trained"
    return {**settings, **changes}


@pytest.mark.slow
def test_finetune_with_maes_recipe_trains_the_table_and_learns():
    images, labels = pattern_images(24, seed=0)
    test_images, test_labels = pattern_images(8, seed=1)
    fields = {k: v for k, v in recipe_settings(epochs=10, warmup_epochs=1, base_lr=0.05).items()
              if k in FinetuneConfig.__dataclass_fields__}
    config = FinetuneConfig(**fields, device="cpu")
    result = finetune(micro_encoder(), dict_loader(images, labels, 8, shuffle=True),
                      dict_loader(test_images, test_labels, 8), 2, config)
    assert result.model.pos_embed is not None and result.model.pos_embed.abs().max() > 0  # trained
    assert result.model.fc_norm is not None
    assert all(np.isfinite(result.loss_per_epoch))
    accuracy = (result.test_scores.argmax(1) == result.test_labels).float().mean().item()
    assert accuracy >= 0.85, accuracy  # 1.0 at this seed, through mixup, cutmix and erasing
    assert result.loss_per_epoch[-1] < result.loss_per_epoch[0]


@pytest.mark.parametrize("kind", sorted(GRID_KINDS))
def test_finetune_protocol_runs_the_recipe_on_every_grid_encoder(kind):
    make_embedding, shape, batch_fn = GRID_KINDS[kind]
    torch.manual_seed(0)
    encoder = micro_grid_mae(make_embedding()).encoder
    images, labels = class_signal(8, shape, seed=0)
    test_images, test_labels = class_signal(4, shape, seed=1)
    settings = recipe_settings(epochs=1, warmup_epochs=0, bootstrap_resamples=0, auto_augment="none")
    records = run_protocol("finetune", dict_loader(images, labels, 4, shuffle=True), dict_loader(test_images, test_labels, 4),
                           encoder=encoder, grid_batch=batch_fn, class_names=["a", "b"], device="cpu",
                           settings=settings, dataset=kind)
    summary = {r.metric: r.value for r in records if r.class_name is None}
    assert 0 <= summary["top1"] <= 1
    assert records[0].settings["mixup"] == 0.8 and records[0].settings["erase_prob"] == 0.25
