"""The original MAE family (facebookresearch/mae ``models_mae.py`` and timm ``VisionTransformer`` keys)
into grid models whose patches go through one 2D convolution (``PatchEmbed2D``, frames sharing one
projection, the channel-shared embedding). Adapter converters reuse :func:`convert_vit_mae` with their
own channel tables (chest X-ray MAE, SatMAE temporal, Scale-MAE, RGB weights into band stacks)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from mae_domains.conversion.channels import (
    ChannelInfo, match_channels, record_channel_mapping, remap_input_channels, remap_pixel_head,
)
from mae_domains.conversion.registry import Converter
from mae_domains.conversion.report import ConversionReport
from mae_domains.conversion.vit_keys import (
    block_count, check_encoder_fits, convert_blocks, convert_mae_decoder, strip_prefix,
)
from mae_domains.grid.pos_embed import sincos_2d_with_prefix
from mae_domains.weights import CheckpointFormatError, adapt_patch_embed_weight, adapt_pixel_head

State = Mapping[str, torch.Tensor]
CLASSIFIER_KEYS = ("head.", "fc_norm.", "head_drop.")
ENCODER_KEYS = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
DECODER_KEYS = ("decoder_", "mask_token")


def is_mae_state(state: State) -> bool:
    """Original MAE / timm ViT keys with a 2D patch convolution."""
    weight = state.get("patch_embed.proj.weight")
    return weight is not None and weight.ndim == 4 and "blocks.0.attn.qkv.weight" in state


def patch_projection(model: nn.Module, source: str) -> nn.Conv2d:
    """The model's single 2D patch convolution (refused for band groups and 3D cubes)."""
    proj = getattr(model.encoder.embedding, "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise CheckpointFormatError(f"{source}: these weights have one 2D patch projection; the model's embedding "
                                    f"({type(model.encoder.embedding).__name__}) has none to receive it")
    return proj


def check_patch_size(weight: torch.Tensor, proj: nn.Module, source: str) -> None:
    if tuple(weight.shape[-2:]) != tuple(proj.weight.shape[-2:]):
        raise CheckpointFormatError(f"{source}: patch size {tuple(weight.shape[-2:])} in the weights, "
                                    f"{tuple(proj.weight.shape[-2:])} in the model (set model.patch_size)")


def adapt_input(weight: torch.Tensor, target_chans: int, report: ConversionReport,
                source_channels: Sequence[ChannelInfo] | None, target_channels: Sequence[ChannelInfo] | None,
                what: str = "patch projection") -> tuple[torch.Tensor, list[int | None] | None]:
    """Input channels of a patch conv: by name when both sides are named, summed for one target channel,
    unchanged when equal, else tiled (timm) with a warning in the report."""
    src_chans = weight.shape[1]
    if source_channels is not None and target_channels is not None and target_chans > 1:
        matches = match_channels(source_channels, target_channels)
        record_channel_mapping(report, what, source_channels, target_channels, matches)
        return remap_input_channels(weight, matches), matches
    if src_chans == target_chans:
        return weight, None
    if target_chans == 1:
        report.adapt(f"{what}: {src_chans} input channels summed into 1 (a gray image copied to {src_chans} "
                     f"channels gives the same response)")
        return adapt_patch_embed_weight(weight, 1), None
    report.adapt(f"{what}: {src_chans} -> {target_chans} channels tiled by index and rescaled (no channel names "
                 f"known: check the channel order)")
    return adapt_patch_embed_weight(weight, target_chans), None


def adapt_head(tensor: torch.Tensor, patch_area: int, target_chans: int, matches: list[int | None] | None,
               initial: torch.Tensor, channel_last: bool = True) -> torch.Tensor:
    """Pixel head rows (p, q, c) for the target channels (matched, averaged for one, or cycled)."""
    if matches is not None:
        return remap_pixel_head(tensor, patch_area, matches, initial, channel_last)
    if not channel_last:
        src = tensor.shape[0] // patch_area
        tensor = tensor.reshape(src, patch_area, *tensor.shape[1:]).transpose(0, 1).reshape(tensor.shape)
    return adapt_pixel_head(tensor, patch_area, target_chans)


def record_position_table(state: State, key: str, width: int, report: ConversionReport) -> None:
    """Say what happens to a fixed position table: the grid model computes its codes per batch."""
    table = state.get(key)
    if table is None:
        return
    n = table.shape[1] - 1
    side = int(round(n ** 0.5))
    standard = None
    if side * side == n and table.shape[-1] == width:
        reference = sincos_2d_with_prefix(width, (side, side)).to(table.dtype)
        standard = float((reference - table.float()).abs().max()) < 1e-4
    if standard:
        report.adapt(f"{key}: the fixed 2D sin-cos table ({side}x{side}) is recomputed per batch for any input size")
    elif standard is False:
        report.adapt(f"{key}: a learned/non-standard table ({side}x{side}) is replaced by the model's 2D sin-cos "
                     f"code; continue pretraining so the blocks adapt")
    report.drop(key, "position codes are computed per batch")


def convert_vit_mae(state: State, model: nn.Module, report: ConversionReport, source: str, *,
                    source_channels: Sequence[ChannelInfo] | None = None,
                    target_channels: Sequence[ChannelInfo] | None = None,
                    pred_channel_last: bool = True, keep_decoder: bool = True) -> dict[str, torch.Tensor]:
    """MAE / timm ViT keys into a grid model with one 2D patch conv: encoder strictly, the decoder when it
    fits (all or nothing), classifier heads dropped."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    proj = patch_projection(model, source)
    weight = state["patch_embed.proj.weight"]
    check_patch_size(weight, proj, source)
    width, depth = weight.shape[0], block_count(state)
    check_encoder_fits(model, width, depth, source, report.family)
    out: dict[str, torch.Tensor] = {}
    target_chans = proj.weight.shape[1]
    new_weight, matches = adapt_input(weight, target_chans, report, source_channels, target_channels)
    out["encoder.embedding.proj.weight"] = new_weight
    report.map("patch_embed.proj.weight", "encoder.embedding.proj.weight")
    if "patch_embed.proj.bias" in state:
        out["encoder.embedding.proj.bias"] = state["patch_embed.proj.bias"]
        report.map("patch_embed.proj.bias", "encoder.embedding.proj.bias")
    for key, target in (("cls_token", "encoder.cls_token"), ("norm.weight", "encoder.norm.weight"),
                        ("norm.bias", "encoder.norm.bias")):
        if key in state:
            out[target] = state[key]
            report.map(key, target)
    record_position_table(state, "pos_embed", width, report)
    convert_blocks(strip_prefix(state, "blocks."), "blocks.", "encoder.blocks.", depth, out, report, source)
    for key in state:
        if key.startswith(CLASSIFIER_KEYS):
            report.drop(key, "classifier of a fine-tuned model")
    if keep_decoder and "decoder_embed.weight" in state:
        patch_area = int(proj.weight.shape[-1] * proj.weight.shape[-2])
        own = model.state_dict()
        initial_w, initial_b = own.get("head.pred.weight"), own.get("head.pred.bias")

        def pred(s: State) -> dict[str, torch.Tensor] | None:
            if initial_w is None or "decoder_pred.weight" not in s:
                report.note("the model's head is not a single pixel head; decoder left at initialization")
                return None
            if initial_w.shape[0] != patch_area * target_chans:
                report.note("the model's pixel head predicts a different target; decoder left at initialization")
                return None
            head = {"head.pred.weight": adapt_head(s["decoder_pred.weight"], patch_area, target_chans, matches,
                                                   initial_w, pred_channel_last),
                    "head.pred.bias": adapt_head(s["decoder_pred.bias"], patch_area, target_chans, matches,
                                                 initial_b, pred_channel_last)}
            report.map("decoder_pred.weight", "head.pred.weight")
            report.map("decoder_pred.bias", "head.pred.bias")
            return head

        if convert_mae_decoder(state, model, out, report, pred, source):
            record_position_table(state, "decoder_pos_embed", state["decoder_embed.weight"].shape[0], report)
    for key in state:
        if key.startswith(DECODER_KEYS) and not any(s == key for s, _ in report.mapped) and \
                not any(d == key for d, _ in report.dropped):
            report.drop(key, "decoder not loaded")
    return out


def _convert_mae(state: State, model: nn.Module, adapter: object, report: ConversionReport) -> dict[str, torch.Tensor]:
    return convert_vit_mae(state, model, report, report.source)


MAE_CONVERTER = Converter(
    family="mae",
    summary="original MAE pretraining checkpoints (facebookresearch/mae) and timm ViT encoders",
    detect=is_mae_state, convert=_convert_mae, priority=0,
)
