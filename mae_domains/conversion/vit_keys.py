"""Building blocks shared by the converters: ViT block weights under timm's keys, the MAE decoder, and
loading the result into a model with a complete account of what was and was not loaded."""

from __future__ import annotations

import re
from typing import Callable, Mapping

import torch
from torch import nn

from mae_domains.conversion.report import ConversionReport
from mae_domains.weights import CheckpointFormatError

State = Mapping[str, torch.Tensor]
BLOCK_PARTS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
               "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
               "mlp.fc2.weight", "mlp.fc2.bias")
_BLOCK_INDEX = re.compile(r"^(\d+)\.")


def strip_prefix(state: State, prefix: str) -> dict[str, torch.Tensor]:
    """Keys that start with ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def block_count(state: State, prefix: str = "blocks.") -> int:
    indices = {int(m.group(1)) for k in state if k.startswith(prefix) and (m := _BLOCK_INDEX.match(k[len(prefix):]))}
    return max(indices) + 1 if indices else 0


def model_depth(module: nn.Module) -> int:
    return len(getattr(module, "blocks", ()))


def check_encoder_fits(model: nn.Module, width: int, depth: int, source: str, family: str) -> None:
    """The model's encoder must have the source's width and depth (a preset is chosen, never guessed)."""
    encoder = model.encoder
    if encoder.embed_dim != width or model_depth(encoder) != depth:
        raise CheckpointFormatError(
            f"{source}: the {family} encoder is {depth} blocks of width {width}; the model has "
            f"{model_depth(encoder)} of width {encoder.embed_dim} (choose the matching model.preset / model.depth)")


def convert_blocks(blocks: State, source_prefix: str, target_prefix: str, depth: int, out: dict[str, torch.Tensor],
                   report: ConversionReport, source: str,
                   rename: Callable[[str], str] = lambda part: part) -> None:
    """``depth`` ViT blocks into timm ``Block`` keys. ``rename`` maps a source part name (after the block
    index) to timm's; LayerScale gammas are folded into the projections they scale (exact), a missing
    qkv bias becomes zeros (exact); q/k normalization has no counterpart and is refused."""
    for i in range(depth):
        parts = {rename(k[len(f"{i}."):]): v for k, v in blocks.items() if k.startswith(f"{i}.")}
        if any(p.startswith(("attn.q_norm", "attn.k_norm")) for p in parts):
            raise CheckpointFormatError(f"{source}: block {i} normalizes queries and keys (qk_norm), which the "
                                        f"model's ViT blocks do not have; these weights cannot be loaded exactly")
        if any(p.startswith(("in_proj", "attn_out_proj", "mlp_out_proj")) for p in parts):
            raise CheckpointFormatError(f"{source}: block {i} is a parallel (ParallelScalingBlock) block; the model's "
                                        f"ViT blocks are sequential, so these weights cannot be loaded exactly")
        for scale_key, proj in (("ls1.gamma", "attn.proj"), ("ls2.gamma", "mlp.fc2")):
            if scale_key in parts:
                gamma = parts.pop(scale_key)
                parts[f"{proj}.weight"] = parts[f"{proj}.weight"] * gamma[:, None]
                parts[f"{proj}.bias"] = parts[f"{proj}.bias"] * gamma
                report.adapt("LayerScale gammas folded into attn.proj / mlp.fc2 (exact)")
        if "attn.qkv.bias" not in parts and "attn.qkv.weight" in parts:
            parts["attn.qkv.bias"] = torch.zeros(parts["attn.qkv.weight"].shape[0], dtype=parts["attn.qkv.weight"].dtype)
            report.adapt("qkv without bias: zero bias (exact)")
        missing = [p for p in BLOCK_PARTS if p not in parts]
        if missing:
            raise CheckpointFormatError(f"{source}: block {i} lacks {', '.join(missing[:3])}")
        for part in BLOCK_PARTS:
            out[f"{target_prefix}{i}.{part}"] = parts.pop(part)
            report.map(f"{source_prefix}{i}.{part}", f"{target_prefix}{i}.{part}")
        for leftover in parts:
            report.drop(f"{source_prefix}{i}.{leftover}", "no counterpart in a ViT block")


def convert_mae_decoder(state: State, model: nn.Module, out: dict[str, torch.Tensor], report: ConversionReport,
                        pred: Callable[[State], dict[str, torch.Tensor] | None], source: str) -> bool:
    """The original MAE decoder (``decoder_embed``, ``mask_token``, ``decoder_blocks``, ``decoder_norm``)
    into ``decoder.*``, and ``pred(state)`` (the pixel head under the model's keys) -- all or nothing: when
    the widths, depth or head do not fit, the decoder stays at initialization and the report says why."""
    embed = state.get("decoder_embed.weight")
    if embed is None:
        return False
    decoder = getattr(model, "decoder", None)
    own = model.state_dict()
    depth = block_count(state, "decoder_blocks.")
    mine = (own.get("decoder.embed.weight"), model_depth(decoder) if decoder is not None else 0)
    if mine[0] is None or mine[0].shape != embed.shape or mine[1] != depth:
        have = "none" if mine[0] is None else f"{mine[1]} blocks of width {mine[0].shape[0]}"
        report.note(f"the checkpoint's decoder ({depth} blocks of width {embed.shape[0]}) does not fit the model's "
                    f"({have}); choose model.decoder_embed_dim / decoder_depth to match to keep it")
        return False
    head = pred(state)
    if head is None:
        return False
    part: dict[str, torch.Tensor] = {"decoder.embed.weight": embed, "decoder.embed.bias": state["decoder_embed.bias"],
                                     "decoder.mask_token": state["mask_token"],
                                     "decoder.norm.weight": state["decoder_norm.weight"],
                                     "decoder.norm.bias": state["decoder_norm.bias"]}
    sub = ConversionReport(report.family, report.source)
    convert_blocks(strip_prefix(state, "decoder_blocks."), "decoder_blocks.", "decoder.blocks.", depth, part, sub, source)
    bad = [k for k, v in {**part, **head}.items() if k not in own or own[k].shape != v.shape]
    if bad:
        report.note(f"the checkpoint's decoder does not fit the model ({', '.join(bad[:3])}); decoder left at initialization")
        return False
    for key in ("decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_norm.weight", "decoder_norm.bias"):
        report.map(key, {"decoder_embed.weight": "decoder.embed.weight", "decoder_embed.bias": "decoder.embed.bias",
                         "mask_token": "decoder.mask_token", "decoder_norm.weight": "decoder.norm.weight",
                         "decoder_norm.bias": "decoder.norm.bias"}[key])
    report.mapped.extend(sub.mapped)
    for note in sub.adapted:
        report.adapt(note)
    out.update(part)
    out.update(head)
    return True


def apply_converted(model: nn.Module, state: Mapping[str, torch.Tensor], report: ConversionReport,
                    source: str) -> ConversionReport:
    """Load converted weights (every key must exist in ``model`` with the same shape; NaN/Inf refused);
    the model's other weights keep their initialization and are listed in the report."""
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise CheckpointFormatError(f"{source}: converted weights name keys the model lacks: {', '.join(unknown[:4])}")
    bad = [k for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        details = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:3])
        raise CheckpointFormatError(f"{source}: converted weights do not fit the model: {details}")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointFormatError(f"{source}: refused to load: NaN/Inf values in {', '.join(nonfinite[:3])}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)
    report.initialized = [k for k in own if k not in state]
    return report
