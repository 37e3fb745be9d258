"""The channel-agnostic microscopy MAE (recursionpharma/maes_microscopy: a timm ViT whose patch embedding
is one shared 1-channel ``Conv2d`` applied to every channel, tokens channel-major, no channel code) into
``microscopy.channel_agnostic``.

Keys are read under ``encoder.vit_backbone.`` (the MAE), ``vit_backbone.`` or bare timm names. Exact where
the architecture allows:
- the reference position code is ``[sin h, cos h, sin w, cos w]`` while the model's is MAE's
  ``[sin w, cos w, sin h, cos h]``: the two halves swapped, which is a fixed permutation of the width. The
  whole residual stream is permuted (patch projection rows, CLS token, every LayerNorm, the input columns of
  qkv and fc1, the output rows of proj and fc2), so the model computes exactly the reference's features with
  their dimensions permuted (pooled features, distances and kNN are unchanged);
- the model's learned channel-name codes are zeroed (the reference has none; they learn from there);
- LayerScale gammas are folded into the projections, a missing qkv bias is zero;
- blocks with q/k normalization or the parallel ``ParallelScalingBlock`` of the released Phenom models have no
  counterpart in the model's sequential ViT blocks and are refused with that reason;
- the reference decoder (fixed channel count, a decoder per channel) is not loaded: the model's shared
  decoder starts fresh.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from mae_domains.conversion import ConversionReport, Converter
from mae_domains.conversion.vit_keys import block_count, check_encoder_fits, convert_blocks, strip_prefix
from mae_domains.models.embeddings import ChannelSharedPatchEmbed
from mae_domains.weights import CheckpointFormatError

State = Mapping[str, torch.Tensor]
PREFIXES = ("encoder.vit_backbone.", "vit_backbone.", "")
# per block: keys whose input (columns) or output (rows) run along the residual stream
INPUT_SIDE = ("attn.qkv.weight", "mlp.fc1.weight")
OUTPUT_SIDE = ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias",
               "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")


def backbone_prefix(state: State) -> str | None:
    for prefix in PREFIXES:
        weight = state.get(f"{prefix}patch_embed.proj.weight")
        if weight is not None and weight.ndim == 4 and weight.shape[1] == 1:
            return prefix
    return None


def is_channel_agnostic_mae(state: State) -> bool:
    return backbone_prefix(state) is not None and any(k.startswith(("encoder.vit_backbone.", "vit_backbone.")) for k in state)


def half_swap(width: int) -> torch.Tensor:
    """Index ``perm`` with ``ours = theirs[..., perm]``: the two halves of the width exchanged."""
    half = width // 2
    return torch.cat([torch.arange(half, width), torch.arange(half)])


def permute_stream(out: dict[str, torch.Tensor], perm: torch.Tensor, depth: int) -> None:
    """Permute every residual-stream axis of the converted encoder weights by ``perm``."""
    out["encoder.embedding.proj.weight"] = out["encoder.embedding.proj.weight"][perm]
    out["encoder.embedding.proj.bias"] = out["encoder.embedding.proj.bias"][perm]
    out["encoder.cls_token"] = out["encoder.cls_token"][..., perm]
    for key in ("encoder.norm.weight", "encoder.norm.bias"):
        out[key] = out[key][perm]
    for i in range(depth):
        prefix = f"encoder.blocks.{i}."
        for part in INPUT_SIDE:
            out[prefix + part] = out[prefix + part][:, perm]
        for part in OUTPUT_SIDE:
            out[prefix + part] = out[prefix + part][perm]


def _convert_ca_mae(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    source = report.source
    embedding = model.encoder.embedding
    if not isinstance(embedding, ChannelSharedPatchEmbed):
        raise CheckpointFormatError(f"{source}: channel-agnostic MAE weights need a channel-shared model "
                                    f"(adapter microscopy.channel_agnostic, 2D)")
    prefix = backbone_prefix(state)
    if prefix is None:
        raise CheckpointFormatError(f"{source}: no 1-channel patch_embed.proj.weight found (a channel-agnostic ViT)")
    inner = strip_prefix(state, prefix) if prefix else dict(state)
    weight = inner["patch_embed.proj.weight"]
    if tuple(weight.shape[-2:]) != tuple(embedding.proj.weight.shape[-2:]):
        raise CheckpointFormatError(f"{source}: patch size {tuple(weight.shape[-2:])}, model "
                                    f"{tuple(embedding.proj.weight.shape[-2:])} (set model.patch_size)")
    width, depth = weight.shape[0], block_count(inner)
    check_encoder_fits(model, width, depth, source, report.family)
    out: dict[str, torch.Tensor] = {
        "encoder.embedding.proj.weight": weight,
        "encoder.embedding.proj.bias": inner.get("patch_embed.proj.bias", torch.zeros(width)),
        "encoder.cls_token": inner["cls_token"],
        "encoder.norm.weight": inner["norm.weight"], "encoder.norm.bias": inner["norm.bias"],
    }
    for key, target in (("patch_embed.proj.weight", "encoder.embedding.proj.weight"),
                        ("patch_embed.proj.bias", "encoder.embedding.proj.bias"), ("cls_token", "encoder.cls_token"),
                        ("norm.weight", "encoder.norm.weight"), ("norm.bias", "encoder.norm.bias")):
        if key in inner:
            report.map(prefix + key, target)
    convert_blocks(strip_prefix(inner, "blocks."), prefix + "blocks.", "encoder.blocks.", depth, out, report, source)
    permute_stream(out, half_swap(width), depth)
    report.adapt("position code: the reference's [sin h, cos h, sin w, cos w] is the model's code with its halves "
                 "swapped; the residual stream is permuted to match, so features equal the reference's up to "
                 "that fixed permutation of dimensions")
    if f"{prefix}pos_embed" in state:
        report.drop(f"{prefix}pos_embed", "fixed sin-cos table, recomputed per batch")
    own = model.state_dict()
    width_table = f"encoder.embedding.channel_tables.{width}.table.weight"
    if width_table in own:
        out[width_table] = torch.zeros_like(own[width_table])
        report.adapt("channel-name codes at the encoder width zeroed (the reference has no channel code)")
    for key in state:
        if not key.startswith(prefix or "\0") and prefix:
            report.drop(key, "reference decoder (fixed channel count) is not loaded")
    return out


CA_MAE = Converter("ca_mae", "channel-agnostic microscopy MAE (recursionpharma/maes_microscopy)",
                   is_channel_agnostic_mae, _convert_ca_mae, adapters=("microscopy.channel_agnostic",), priority=10)
