"""Published medical checkpoints into this package's models:

- ``chest_xray_mae``: the chest X-ray MAE (lambert-x/medical_mae, ViT-S/B with original MAE / timm keys,
  3-channel patch embedding) into ``medical.xray`` / ``medical.ultrasound``: the three input channels are
  summed into one (a gray radiograph copied to RGB gives the same response), the pixel head's three
  channel rows averaged; original-MAE-keyed weights are found as family ``mae`` and converted the same way;
- ``monai_vit``: MONAI's ``ViT`` (alone, inside ``UNETR`` as ``vit.``, or ``ViTAutoEnc`` from MONAI's
  self-supervised tutorial) into ``medical.ct``: ``patch_embedding.patch_embeddings`` (a ``Conv3d``, or the
  ``perceptron`` variant's linear layer) -> the cube projection, ``mlp.linear1/2`` -> ``mlp.fc1/2``,
  ``attn.out_proj`` -> ``attn.proj``; MONAI's (x, y, z) kernel axes are reversed to this adapter's (z, y, x)
  volumes; the learned ``position_embeddings`` table has no counterpart (3D sin-cos codes here) and MONAI's ViT
  has no CLS token, so the model's stays at initialization.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from mae_domains.conversion import ConversionReport, Converter, convert_vit_mae
from mae_domains.conversion.vit_keys import block_count, check_encoder_fits, convert_blocks, strip_prefix
from mae_domains.models.embeddings import CubePatchEmbed3D
from mae_domains.weights import CheckpointFormatError

State = Mapping[str, torch.Tensor]
MONAI_PREFIXES = ("vit.", "backbone.", "encoder.")
MONAI_BLOCK_PARTS = {"mlp.linear1": "mlp.fc1", "mlp.linear2": "mlp.fc2", "attn.out_proj": "attn.proj"}
MONAI_CONV = "patch_embedding.patch_embeddings.weight"
MONAI_LINEAR = "patch_embedding.patch_embeddings.1.weight"


def _convert_xray_mae(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    return convert_vit_mae(state, model, report, report.source)


def monai_state(state: State) -> dict[str, torch.Tensor]:
    """MONAI ViT keys without a wrapper prefix (``vit.`` in UNETR)."""
    for prefix in MONAI_PREFIXES:
        if f"{prefix}{MONAI_CONV}" in state or f"{prefix}{MONAI_LINEAR}" in state:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def is_monai_vit(state: State) -> bool:
    inner = monai_state(state)
    return MONAI_CONV in inner or MONAI_LINEAR in inner


def monai_patch_weight(state: State, embedding: CubePatchEmbed3D, report: ConversionReport) -> torch.Tensor:
    """The cube projection ``(D, C, pz, py, px)`` from MONAI's conv or perceptron patch embedding."""
    if MONAI_CONV in state:
        weight = state[MONAI_CONV]
        report.map(MONAI_CONV, "encoder.embedding.proj.weight")
    else:
        linear = state[MONAI_LINEAR]  # (D, p1*p2*p3*C), rows laid out (p1, p2, p3, c)
        p1, p2, p3 = embedding.patch_size[2], embedding.patch_size[1], embedding.patch_size[0]
        channels = linear.shape[1] // (p1 * p2 * p3)
        weight = linear.reshape(linear.shape[0], p1, p2, p3, channels).permute(0, 4, 1, 2, 3)
        report.map(MONAI_LINEAR, "encoder.embedding.proj.weight")
        report.adapt("perceptron patch embedding: linear weight (p1 p2 p3 c) reshaped into a Conv3d kernel")
    report.adapt("patch kernel axes: MONAI's (x, y, z) of a RAS array reversed to the model's (z, y, x)")
    return weight.permute(0, 1, 4, 3, 2)


def _convert_monai_vit(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    source = report.source
    embedding = model.encoder.embedding
    if not isinstance(embedding, CubePatchEmbed3D):
        raise CheckpointFormatError(f"{source}: MONAI ViT weights need a 3D cube model (adapter medical.ct)")
    inner = monai_state(state)
    for key in state:
        if key not in inner and not any(key == p + k for p in MONAI_PREFIXES for k in inner):
            report.drop(key, "outside the ViT (UNETR/autoencoder decoder)")
    weight = monai_patch_weight(inner, embedding, report)
    if tuple(weight.shape[2:]) != tuple(embedding.proj.weight.shape[2:]) or weight.shape[1] != embedding.in_chans:
        raise CheckpointFormatError(f"{source}: patch kernel {tuple(weight.shape[1:])} (channels, z, y, x) vs the "
                                    f"model's {tuple(embedding.proj.weight.shape[1:])} (set model.patch_size)")
    width, depth = weight.shape[0], block_count(inner)
    check_encoder_fits(model, width, depth, source, report.family)
    out: dict[str, torch.Tensor] = {"encoder.embedding.proj.weight": weight}
    if "patch_embedding.patch_embeddings.bias" in inner or "patch_embedding.patch_embeddings.1.bias" in inner:
        key = next(k for k in ("patch_embedding.patch_embeddings.bias", "patch_embedding.patch_embeddings.1.bias") if k in inner)
        out["encoder.embedding.proj.bias"] = inner[key]
        report.map(key, "encoder.embedding.proj.bias")
    for key in ("norm.weight", "norm.bias"):
        out[f"encoder.{key}"] = inner[key]
        report.map(key, f"encoder.{key}")

    def rename(part: str) -> str:
        for old, new in MONAI_BLOCK_PARTS.items():
            if part.startswith(old + "."):
                return new + part[len(old):]
        return part

    blocks = {k: v for k, v in strip_prefix(inner, "blocks.").items() if ".norm_cross_attn." not in k
              and ".cross_attn." not in k}
    for key in inner:
        if key.startswith("blocks.") and (".norm_cross_attn." in key or ".cross_attn." in key):
            report.drop(key, "cross-attention of MONAI's block (unused by the ViT)")
    convert_blocks(blocks, "blocks.", "encoder.blocks.", depth, out, report, source, rename=rename)
    if "patch_embedding.position_embeddings" in inner:
        report.drop("patch_embedding.position_embeddings", "learned position table")
        report.adapt("position: MONAI's learned table is replaced by the model's 3D sin-cos code (scaled by voxel "
                     "spacing); continue pretraining so the blocks adapt")
    report.note("MONAI's ViT has no CLS token: the model's starts at initialization; MONAI's LayerNorms use eps "
                "1e-5, the model's 1e-6")
    return out


CHEST_XRAY_MAE = Converter("chest_xray_mae", "chest X-ray MAE (lambert-x/medical_mae), 3 channels summed into 1",
                           lambda state: False, _convert_xray_mae, adapters=("medical.xray", "medical.ultrasound"))
MONAI_VIT = Converter("monai_vit", "MONAI ViT / UNETR / ViTAutoEnc encoder (3D SSL weights)", is_monai_vit,
                      _convert_monai_vit, adapters=("medical.ct",), priority=10)
