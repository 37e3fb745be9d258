"""Fine-tuning a grid encoder: layer-decay groups, drop path, pooling over the grid, determinism, and the
``finetune`` protocol for every kind of grid encoder."""

from __future__ import annotations

import pytest
import torch
from timm.layers import DropPath

from mae_domains.evaluation.finetune import FinetuneConfig, GridClassifier, finetune, set_drop_path
from mae_domains.evaluation.runner import run_protocol
from mae_domains.grid import GridBatch
from mae_domains.optim import param_groups
from tests.evaluation.helpers import GRID_KINDS, class_signal, dict_loader, micro_encoder, micro_grid_mae, pattern_images


def test_layer_decay_groups_of_a_grid_classifier():
    model = GridClassifier(micro_encoder(), num_classes=3)
    assert model.depth == 2
    groups = param_groups(model, 0.05, layer_decay=0.5, depth=model.depth)
    by_name = {name: group for group in groups for name in group["param_names"]}
    # scale = decay ** (depth + 1 - layer_id): 0.125, 0.25, 0.5, 1.
    expected = {
        "encoder.cls_token": 0.125, "encoder.embedding.proj.weight": 0.125, "encoder.embedding.proj.bias": 0.125,
        "encoder.blocks.0.attn.qkv.weight": 0.25, "encoder.blocks.0.norm1.weight": 0.25,
        "encoder.blocks.1.mlp.fc1.weight": 0.5, "encoder.blocks.1.attn.proj.bias": 0.5,
        "encoder.norm.weight": 1.0, "head.weight": 1.0, "head.bias": 1.0,
    }
    for name, scale in expected.items():
        assert by_name[name]["lr_scale"] == pytest.approx(scale), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(by_name) == trainable and sum(len(g["param_names"]) for g in groups) == len(trainable)
    assert by_name["encoder.cls_token"]["weight_decay"] == 0.0
    assert by_name["encoder.blocks.0.norm1.weight"]["weight_decay"] == 0.0
    assert by_name["head.bias"]["weight_decay"] == 0.0
    assert by_name["encoder.blocks.0.attn.qkv.weight"]["weight_decay"] == 0.05
    assert by_name["head.weight"]["weight_decay"] == 0.05


def test_drop_path_rises_linearly():
    encoder = micro_encoder()
    set_drop_path(encoder, 0.2)
    assert isinstance(encoder.blocks[0].drop_path1, torch.nn.Identity)
    assert isinstance(encoder.blocks[1].drop_path1, DropPath) and encoder.blocks[1].drop_path1.drop_prob == pytest.approx(0.2)


def test_avg_pool_leaves_invalid_tokens_out():
    model = GridClassifier(micro_encoder(), num_classes=2, pool="avg").eval()
    images = torch.randn(2, 3, 16, 16)
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    valid[:, :, 8:] = False  # the right half of the 2 x 2 token grid holds no data
    changed = images.clone()
    changed[:, :, :, 8:] += 5.0
    with torch.no_grad():
        # attention still sees invalid tokens, so compare against the mean of the valid tokens directly
        grid = model.encoder.embedding(GridBatch(images, valid))
        grid = grid.with_prefix(model.encoder.cls_token.expand(2, -1, -1))
        tokens = model.encoder.blocks(grid.sequence())[:, 1:]
        expected = model.encoder.norm(tokens[:, [0, 2]].mean(dim=1))
        pooled = model.forward_features(GridBatch(images, valid))
        assert not torch.allclose(model.forward_features(GridBatch(changed)), model.forward_features(GridBatch(images)))
    torch.testing.assert_close(pooled, expected)


@pytest.mark.parametrize("pool", ["avg", "cls"])
def test_finetune_learns_structure_and_leaves_encoder_untouched(pool):
    images, labels = pattern_images(24, seed=0)
    test_images, test_labels = pattern_images(10, seed=1)
    encoder = micro_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    config = FinetuneConfig(epochs=6, base_lr=0.05, warmup_epochs=1, layer_decay=0.75, drop_path=0.1, pool=pool, device="cpu")
    result = finetune(encoder, dict_loader(images, labels, 16, shuffle=True), dict_loader(test_images, test_labels, 16),
                      num_classes=2, config=config)
    accuracy = (result.test_scores.argmax(1) == result.test_labels).float().mean().item()
    assert accuracy >= 0.9
    assert result.loss_per_epoch[-1] < result.loss_per_epoch[0]
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert result.test_sample_ids[:2] == ["s0000", "s0001"]


def test_finetune_is_seeded_and_supports_multilabel():
    images, labels = pattern_images(8, seed=0)
    targets = torch.stack([labels.float(), 1 - labels.float()], dim=1)
    config = FinetuneConfig(epochs=2, base_lr=1e-3, warmup_epochs=0, device="cpu", seed=3)
    runs = [finetune(micro_encoder(), dict_loader(images, targets, 8, shuffle=True), dict_loader(images, targets, 8), 2, config)
            for _ in range(2)]
    assert runs[0].loss_per_epoch == runs[1].loss_per_epoch
    torch.testing.assert_close(runs[0].test_scores, runs[1].test_scores)
    assert runs[0].test_labels.shape == (16, 2) and ((runs[0].test_scores >= 0) & (runs[0].test_scores <= 1)).all()
    other = finetune(micro_encoder(), dict_loader(images, targets, 8, shuffle=True), None, 2,
                     FinetuneConfig(epochs=2, base_lr=1e-3, warmup_epochs=0, device="cpu", seed=4))
    assert other.loss_per_epoch != runs[0].loss_per_epoch


def test_a_plain_vit_encoder_is_refused():
    from mae_domains.testing.reference_mae import build_mae

    plain = build_mae("micro", img_size=32, patch_size=8, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4)
    with pytest.raises(TypeError, match="GridEncoder"):
        GridClassifier(plain.encoder, 2)


# ----- the finetune protocol for every kind of grid encoder ------------------------------------------
@pytest.mark.parametrize("kind", sorted(GRID_KINDS))
def test_finetune_protocol_for_every_grid_encoder(kind):
    make_embedding, shape, batch_fn = GRID_KINDS[kind]
    torch.manual_seed(0)
    encoder = micro_grid_mae(make_embedding()).encoder
    images, labels = class_signal(24, shape, seed=0)
    test_images, test_labels = class_signal(8, shape, seed=1)
    settings = {"epochs": 4, "base_lr": 0.05, "warmup_epochs": 0, "drop_path": 0.0, "bootstrap_resamples": 0}
    seen: list[GridBatch] = []

    def recording(batch, device):
        grid_batch = batch_fn(batch, device) if batch_fn else GridBatch(batch["image"].to(device))
        seen.append(grid_batch)
        return grid_batch

    records = run_protocol("finetune", dict_loader(images, labels, 8, shuffle=True), dict_loader(test_images, test_labels, 8),
                           encoder=encoder, grid_batch=recording, class_names=["down", "up"], device="cpu",
                           settings=settings, dataset=kind)
    summary = {r.metric: r.value for r in records if r.class_name is None}
    assert set(summary) == {"top1", "balanced_accuracy", "macro_f1", "mean_roc_auc"} and all(0 <= v <= 1 for v in summary.values())
    assert records[0].n_train == 24 and records[0].n_test == 8 and records[0].protocol == "finetune"
    assert len(seen) == 4 * 3 + 1  # 3 training batches per epoch, then one test batch
    result = finetune(encoder, dict_loader(images, labels, 8, shuffle=True), None, 2,
                      FinetuneConfig(**{k: v for k, v in settings.items() if k != "bootstrap_resamples"}, device="cpu"),
                      batch_fn=batch_fn)
    losses = result.loss_per_epoch
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses


@pytest.mark.parametrize("native", [True, False])
def test_finetune_trains_at_the_trainers_cpu_precision(monkeypatch, native):
    """``auto`` is bf16 (with matmul attention) on a CPU with native bf16, as in the trainer; fp32 without."""
    import importlib

    device_module = importlib.import_module("mae_domains.device")  # the packages export functions of these names
    finetune_module = importlib.import_module("mae_domains.evaluation.finetune")

    monkeypatch.setattr(device_module, "cpu_native_bf16", lambda: (native, "stated by the test"))
    seen = []
    real_autocast = finetune_module.autocast
    monkeypatch.setattr(finetune_module, "autocast", lambda dev, precision: seen.append(precision.dtype) or
                        real_autocast(dev, precision))
    images, labels = pattern_images(4, seed=0)
    result = finetune(micro_encoder(), dict_loader(images, labels, 8), None, 2,
                      FinetuneConfig(epochs=1, warmup_epochs=0, device="cpu"))
    assert seen and set(seen) == {torch.bfloat16 if native else None}
    fused = {m.fused_attn for m in result.model.modules() if hasattr(m, "fused_attn")}
    assert fused == ({False} if native else {True})
