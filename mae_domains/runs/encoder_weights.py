"""Encoder weights in and out of a model: timm ``VisionTransformer`` keys where the encoder has a 2D
patch embedding, the encoder's own keys otherwise; original-MAE and timm files loaded into our models.

timm keys differ from a grid encoder's in two places only: ``patch_embed.proj`` is ``embedding.proj``,
and timm's fixed ``pos_embed`` table does not exist in a grid encoder (it recomputes the same sin-cos
codes per batch), so an incoming table is checked against the recomputed one and dropped.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch
from torch import nn

from mae_domains.weights import CheckpointFormatError, convert_original_mae_keys

log = logging.getLogger(__name__)

TIMM_FORMAT = "timm.VisionTransformer"
NATIVE_FORMAT = "mae_domains.encoder"
TIMM_KEYS = ("patch_embed.proj.weight", "cls_token", "pos_embed")
TIMM_PREFIXES = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
POSITION_TOLERANCE = 1e-4


def export_encoder_state(model: nn.Module, grid_hw: tuple[int, int]) -> tuple[dict[str, torch.Tensor], str]:
    """The encoder's weights and their format: timm keys (``pos_embed`` for a ``grid_hw`` grid) when the
    encoder can give them, its own keys otherwise (band groups, time series, channel-shared, 3D)."""
    encoder = model.encoder
    to_timm = getattr(encoder, "timm_state_dict", None)
    if to_timm is not None:
        try:
            return dict(to_timm(grid_hw)), TIMM_FORMAT
        except TypeError:  # not a 2D patch embedding
            return dict(encoder.state_dict()), NATIVE_FORMAT
    state = dict(encoder.state_dict())
    return state, TIMM_FORMAT if all(k in state for k in TIMM_KEYS) else NATIVE_FORMAT


def _check_fixed_positions(encoder: nn.Module, table: torch.Tensor, grid_hw: tuple[int, int] | None) -> None:
    """Warn when a timm ``pos_embed`` that is dropped differs from the codes the encoder recomputes."""
    to_timm = getattr(encoder, "timm_state_dict", None)
    expected = None
    if to_timm is not None and grid_hw is not None:
        try:
            expected = to_timm(grid_hw).get("pos_embed")
        except TypeError:
            expected = None
    if expected is None or expected.shape != table.shape:
        log.warning("pos_embed %s ignored: the encoder computes its own position codes", tuple(table.shape))
        return
    gap = float((expected.float().cpu() - table.float().cpu()).abs().max())
    if gap > POSITION_TOLERANCE:
        log.warning("pos_embed differs from the fixed 2D sin-cos table by up to %.3g (a learned table?); "
                    "the encoder uses the sin-cos codes", gap)


def encoder_state_for(encoder: nn.Module, state: Mapping[str, torch.Tensor],
                      grid_hw: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """``state`` (timm or the encoder's own keys) renamed to the encoder's keys; every encoder weight
    must be present and none left over (:class:`CheckpointFormatError` names them otherwise)."""
    own = encoder.state_dict()
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        renamed = "embedding." + key[len("patch_embed."):] if key.startswith("patch_embed.") else None
        if key in own:
            out[key] = value
        elif renamed is not None and renamed in own:
            out[renamed] = value
        elif key == "pos_embed":
            _check_fixed_positions(encoder, value, grid_hw)
        else:
            unexpected.append(key)
    missing = [k for k in own if k not in out]
    if missing or unexpected:
        parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:5])}" if unexpected else ""]
        raise CheckpointFormatError(f"encoder weights do not fit the model ({'; '.join(p for p in parts if p)})")
    bad = [k for k, v in out.items() if v.shape != own[k].shape]
    if bad:
        details = ", ".join(f"{k} {tuple(out[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:4])
        raise CheckpointFormatError(f"encoder weights do not fit the model: {details}")
    return out


def load_pretrained_weights(model: nn.Module, state: Mapping[str, torch.Tensor],
                            grid_hw: tuple[int, int] | None = None) -> int:
    """Load encoder weights (an export, a timm model) or a whole foreign MAE (original MAE keys, or ours)
    into ``model``: the encoder strictly, decoder weights where name and shape fit. Returns the number
    of decoder weights loaded."""
    encoder_keys = set(model.encoder.state_dict())
    encoder_state: dict[str, torch.Tensor] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.startswith("encoder."):
            encoder_state[key[len("encoder."):]] = value
        elif key in encoder_keys or key.startswith(TIMM_PREFIXES):
            encoder_state[key] = value
        else:
            rest[key] = value
    model.encoder.load_state_dict(encoder_state_for(model.encoder, encoder_state, grid_hw))
    own = model.state_dict()
    fitting = {k: v for k, v in convert_original_mae_keys(rest).items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    if len(fitting) < len(rest):
        log.info("%d of %d non-encoder weights fit the model and were loaded", len(fitting), len(rest))
    return len(fitting)
