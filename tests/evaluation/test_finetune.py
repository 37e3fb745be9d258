import pytest
import torch
from timm.layers import DropPath

from mae_domains.evaluation.finetune import (
    FinetuneConfig, ViTClassifier, finetune, layer_id_for_param, param_groups_layer_decay, set_drop_path,
)
from tests.evaluation.helpers import dict_loader, micro_encoder, pattern_images


def test_layer_ids():
    assert layer_id_for_param("encoder.patch_embed.proj.weight", 2) == 0
    assert layer_id_for_param("cls_token", 2) == 0
    assert layer_id_for_param("encoder.pos_embed", 2) == 0
    assert layer_id_for_param("encoder.blocks.0.attn.qkv.weight", 2) == 1
    assert layer_id_for_param("encoder.blocks.1.mlp.fc2.bias", 2) == 2
    assert layer_id_for_param("encoder.norm.weight", 2) == 3
    assert layer_id_for_param("head.weight", 2) == 3


def test_layer_decay_groups_on_micro_vit():
    encoder = micro_encoder()
    assert encoder.depth == 2
    model = ViTClassifier(encoder, num_classes=3)
    groups = param_groups_layer_decay(model, depth=2, weight_decay=0.05, layer_decay=0.5)
    by_name = {name: group for group in groups for name in group["param_names"]}
    # scale = decay ** (depth + 1 - layer_id): 0.125, 0.25, 0.5, 1.
    expected = {
        "encoder.cls_token": 0.125, "encoder.patch_embed.proj.weight": 0.125, "encoder.patch_embed.proj.bias": 0.125,
        "encoder.blocks.0.attn.qkv.weight": 0.25, "encoder.blocks.0.norm1.weight": 0.25,
        "encoder.blocks.1.mlp.fc1.weight": 0.5, "encoder.blocks.1.attn.proj.bias": 0.5,
        "encoder.norm.weight": 1.0, "head.weight": 1.0, "head.bias": 1.0,
    }
    for name, scale in expected.items():
        assert by_name[name]["lr_scale"] == pytest.approx(scale), name
    # The fixed sin-cos table is frozen, so it is in no group; every trainable parameter is in exactly one.
    assert "encoder.pos_embed" not in by_name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(by_name) == trainable and sum(len(g["param_names"]) for g in groups) == len(trainable)
    # No weight decay on biases, norms and the CLS token; decay on matrices.
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


@pytest.mark.parametrize("pool", ["avg", "cls"])
def test_finetune_learns_structure_and_leaves_encoder_untouched(pool):
    torch.set_num_threads(2)
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
