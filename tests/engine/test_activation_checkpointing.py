"""Activation checkpointing changes memory, not arithmetic: the same loss and gradients as the plain
model (drop path on, both decoders), the same state-dict keys, and exact resume through the engine."""

from __future__ import annotations

import copy

import pytest
import torch

from mae_domains.engine import pretrain
from mae_domains.engine.activation_checkpointing import (enable_activation_checkpointing, is_checkpointed,
                                                          transformer_blocks)
from mae_domains.models.embeddings.patch2d import PatchEmbed2D
from mae_domains.models.grid_mae import build_grid_mae

from .conftest import StopAfter, assert_optimizer_equal, assert_tensors_equal, crash_at, load_checkpoint, make_config


def micro_mae(decoder: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_grid_mae(PatchEmbed2D(3, 64, 8), preset="micro", decoder=decoder, decoder_depth=2,
                          norm_pix_loss=True, drop_path_rate=0.3, query=0.5 if decoder == "cross" else "masked")


def loss_and_grads(model: torch.nn.Module, images: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # drop path draws from the global RNG
    out = model(images, mask_seeds=torch.arange(images.shape[0]))
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("decoder", ["self", "cross"])
def test_same_loss_and_gradients_as_the_plain_model(decoder):
    plain = micro_mae(decoder)
    checkpointed = copy.deepcopy(plain)
    count = enable_activation_checkpointing(checkpointed)
    assert count == 2 + 2  # encoder and decoder blocks
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    loss_a, grads_a = loss_and_grads(plain, images, seed=7)
    rng_after_plain = torch.get_rng_state()
    loss_b, grads_b = loss_and_grads(checkpointed, images, seed=7)
    # the recomputation replays drop path with the forward's RNG state and leaves the global RNG alone
    assert torch.equal(torch.get_rng_state(), rng_after_plain)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    torch.testing.assert_close(loss_b, loss_a, rtol=0, atol=0)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-6, atol=1e-7, msg=name)
    # a different drop-path draw gives different gradients: the comparison above can tell
    _, other = loss_and_grads(plain, images, seed=8)
    assert any(not torch.allclose(other[n], grads_a[n]) for n in grads_a)


def test_same_keys_eval_unchanged_and_idempotent():
    plain = micro_mae("self")
    checkpointed = copy.deepcopy(plain)
    enable_activation_checkpointing(checkpointed)
    assert enable_activation_checkpointing(checkpointed) == 4  # twice is once
    assert all(is_checkpointed(block) for _, block in transformer_blocks(checkpointed))
    assert not any(is_checkpointed(block) for _, block in transformer_blocks(plain))
    assert list(plain.state_dict()) == list(checkpointed.state_dict())
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in checkpointed.named_parameters()]
    checkpointed.load_state_dict(plain.state_dict(), strict=True)
    images = torch.randn(2, 3, 32, 32)
    plain.eval(), checkpointed.eval()
    with torch.no_grad():
        a = plain.encoder.forward_features(images)
        b = checkpointed.encoder.forward_features(images)
    assert torch.equal(a, b)


def test_a_model_without_blocks_is_refused():
    with pytest.raises(ValueError, match="no transformer blocks"):
        enable_activation_checkpointing(torch.nn.Linear(2, 2))


SETTINGS = ("engine.batch_size=4", "engine.max_steps=5", "engine.checkpoint_every=2", "data.num_workers=0",
            "model.drop_path_rate=0.2", "optim.warmup_steps=2", "engine.seed=3", "engine.figure_every=0")


def test_engine_run_matches_and_resumes_exactly(png_archive, tmp_path):
    """Through the engine: the checkpointed run's weights equal the plain run's, and a crash + resume
    of a checkpointed run ends bitwise where the uninterrupted one does."""
    plain = pretrain(make_config(png_archive, *SETTINGS), tmp_path / "plain")
    cfg = make_config(png_archive, *SETTINGS, "engine.activation_checkpointing=true")
    full = pretrain(cfg, tmp_path / "full")
    assert plain.steps == full.steps == 5
    a, b = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "full")
    assert_tensors_equal(a["model"], b["model"], exact=False, atol=1e-6)
    with pytest.raises(StopAfter):
        pretrain(cfg, tmp_path / "resumed", on_step=crash_at(3))
    assert load_checkpoint(tmp_path / "resumed")["step"] == 2
    pretrain(cfg, tmp_path / "resumed", resume=True)
    c = load_checkpoint(tmp_path / "resumed")
    assert_tensors_equal(b["model"], c["model"], exact=True)
    assert_optimizer_equal(b["optimizer"], c["optimizer"], exact=True)
