"""Activation checkpointing: each transformer block keeps only its input during the forward pass and
recomputes its activations in backward (``torch.utils.checkpoint``, non-reentrant).

Memory for activations drops from one set per block to about one block's worth plus the block inputs,
at the price of a second forward pass through the blocks (about a third more compute). Loss and
gradients are those of the plain model: the recomputation restores the RNG state (drop path, dropout)
and the autocast state of the original forward, and the global RNG is left as it was, so exact resume
is unaffected. Each block's class is swapped for a subclass that only overrides ``forward``: parameter names,
state-dict keys and the optimizer's parameter order do not change, so checkpoints load either way.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["enable_activation_checkpointing", "is_checkpointed", "transformer_blocks"]

# ``encoder.blocks.3``, ``decoder.blocks.0``, ``mae.encoder.blocks.11``: an item of a ``blocks`` container.
BLOCK_NAME = re.compile(r"(^|\.)blocks\.\d+$")
MARK = "_mae_activation_checkpointed"
CHECKPOINTED_CLASSES: dict[type, type] = {}


def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's transformer blocks (every item of a container named ``blocks``), outermost first;
    a block nested inside another block is not listed again."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if BLOCK_NAME.search(name) and not any(name.startswith(outer + ".") for outer, _ in found):
            found.append((name, module))
    return found


def checkpointed_class(cls: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``cls`` whose ``forward`` runs under ``torch.utils.checkpoint`` while the module
    trains with autograd on, and plainly otherwise (evaluation, ``no_grad``, embedding)."""
    if cls not in CHECKPOINTED_CLASSES:
        def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
            plain = functools.partial(cls.forward, self)
            if self.training and torch.is_grad_enabled():
                return checkpoint(plain, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)
            return plain(*args, **kwargs)

        CHECKPOINTED_CLASSES[cls] = type(f"Checkpointed{cls.__name__}", (cls,),
                                         {"forward": forward, MARK: True, "__module__": cls.__module__})
    return CHECKPOINTED_CLASSES[cls]


def is_checkpointed(module: nn.Module) -> bool:
    return bool(getattr(type(module), MARK, False))


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Checkpoint every transformer block of ``model`` (idempotent); returns how many blocks are.
    A model without blocks named ``blocks.N`` is an error rather than a silent no-op."""
    blocks = transformer_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no transformer blocks (modules named 'blocks.N') "
                         "to checkpoint; turn engine.activation_checkpointing off")
    for _, block in blocks:
        if not is_checkpointed(block):
            block.__class__ = checkpointed_class(type(block))
    return len(blocks)
