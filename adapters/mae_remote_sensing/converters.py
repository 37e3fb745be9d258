"""Published remote-sensing checkpoints into this package's models, bands matched by name or wavelength:

- ``satmae_group``: SatMAE's group-channel MAE (``models_mae_group_channels.py``: ``patch_embed.{i}.proj``
  per band group, ``channel_embed``, ``decoder_pred.{i}``) into ``remote_sensing.multispectral``;
- ``satmae_temporal``: SatMAE's temporal MAE (``models_mae_temporal.py``, fMoW RGB frames, date code in 384
  dims) into ``remote_sensing.temporal``;
- ``prithvi``: NASA/IBM Prithvi-100M (6 HLS bands, ``Conv3d`` tubelets of 1 x 16 x 16 over 3 frames, 3D
  sin-cos table) into ``remote_sensing.temporal`` (a tubelet of one frame is a 2D patch);
- ``scale_mae``: Scale-MAE (RGB ViT with GSD-scaled sin-cos; FPN/FCN decoder) encoder into
  ``remote_sensing.scale`` (or any model here with one 2D patch projection);
- ``mae``: RGB MAE / timm weights into any of these models: red on B4, green on B3, blue on B2.

Every band of the model is found in the checkpoint by name (``B4`` is also ``red``) or centre wavelength;
bands with no counterpart start at zero in the input projection and are listed in the report.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from mae_domains.conversion import RGB_CHANNELS, ChannelInfo, ConversionReport, Converter, convert_vit_mae, \
    is_mae_state
from mae_domains.conversion.channels import describe_matches, match_channels, remap_input_channels, remap_pixel_head
from mae_domains.conversion.vit_keys import block_count, check_encoder_fits, convert_blocks, convert_mae_decoder, \
    strip_prefix
from mae_domains.models.embeddings import BandGroupPatchEmbed
from mae_domains.weights import CheckpointFormatError

from mae_remote_sensing.bands import SENTINEL2_BANDS, normalize_band_name

State = Mapping[str, torch.Tensor]
RS_ADAPTERS = ("remote_sensing.multispectral", "remote_sensing.temporal", "remote_sensing.scale")
# SatMAE's Sentinel-2 input: the 13 L1C bands without B1, B9, B10; groups are indices into this list
SATMAE_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
SATMAE_GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))
# Prithvi-100M's six HLS bands: blue, green, red, narrow NIR, SWIR 1, SWIR 2
PRITHVI_BANDS = ("B2", "B3", "B4", "B8A", "B11", "B12")


def band_channels(names: Sequence[str]) -> list[ChannelInfo]:
    """Sentinel-2-named bands with their wavelengths and common names (``B4`` = ``red``)."""
    out = []
    for name in names:
        key = normalize_band_name(str(name))
        info = SENTINEL2_BANDS.get(key)
        out.append(ChannelInfo(key, info.wavelength_nm, (info.description,)) if info else ChannelInfo(key))
    return out


def model_bands(adapter: Any) -> list[str]:
    bands = getattr(adapter, "bands", None)
    if not bands:
        raise CheckpointFormatError(f"adapter {getattr(adapter, 'name', '?')} names no bands to map weights onto")
    return list(bands)


# ----- band groups ---------------------------------------------------------------------------------
def map_group_projection(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                         source_groups: Sequence[Sequence[ChannelInfo]], embedding: BandGroupPatchEmbed,
                         bands: Sequence[str], out: dict[str, torch.Tensor], report: ConversionReport,
                         source_names: Sequence[str]) -> list[tuple[int | None, list[int | None]]]:
    """Each model group's projection from the source group sharing most of its bands, channels by name.
    Returns per model group ``(source group, matches within it)``."""
    plan = []
    for gi, group in enumerate(embedding.groups):
        target = band_channels([bands[b] for b in group])
        candidates = [(sum(m is not None for m in match_channels(src, target)), si)
                      for si, src in enumerate(source_groups)]
        hits, si = max(candidates, key=lambda c: (c[0], -c[1]))
        name = embedding.group_names[gi]
        if hits == 0:
            report.note(f"group {name}: no band in the checkpoint; its projection stays at initialization")
            plan.append((None, [None] * len(group)))
            continue
        matches = match_channels(source_groups[si], target)
        out[f"encoder.embedding.projs.{gi}.weight"] = remap_input_channels(weights[si], matches)
        report.map(f"{source_names[si]}.weight", f"encoder.embedding.projs.{gi}.weight")
        if biases[si] is not None:
            out[f"encoder.embedding.projs.{gi}.bias"] = biases[si]
            report.map(f"{source_names[si]}.bias", f"encoder.embedding.projs.{gi}.bias")
        report.adapt(f"group {name} <- {source_names[si]}: {describe_matches(source_groups[si], target, matches)}")
        plan.append((si, matches))
    return plan


def group_heads(preds: Sequence[tuple[torch.Tensor, torch.Tensor]], plan: Sequence[tuple[int | None, list]],
                model: nn.Module, patch_area: int, channel_last: bool) -> dict[str, torch.Tensor] | None:
    """Routed pixel heads (``head.heads.{g}``, rows (p, q, c) padded to the largest group) from the source
    heads of the planned groups; unmatched rows keep their initialization."""
    own = model.state_dict()
    embedding = model.encoder.embedding
    out = {}
    for gi, (si, matches) in enumerate(plan):
        key = f"head.heads.{gi}"
        if f"{key}.weight" not in own:
            return None
        padded = list(matches) + [None] * (embedding.max_group - len(matches))
        if si is None:
            continue
        weight, bias = preds[si]
        out[f"{key}.weight"] = remap_pixel_head(weight, patch_area, padded, own[f"{key}.weight"], channel_last)
        out[f"{key}.bias"] = remap_pixel_head(bias, patch_area, padded, own[f"{key}.bias"], channel_last)
    return out


def encoder_common(state: State, model: nn.Module, width: int, report: ConversionReport,
                   out: dict[str, torch.Tensor], source: str) -> None:
    """CLS token, blocks and final norm of a MAE-style encoder."""
    depth = block_count(state)
    check_encoder_fits(model, width, depth, source, report.family)
    for key, target in (("cls_token", "encoder.cls_token"), ("norm.weight", "encoder.norm.weight"),
                        ("norm.bias", "encoder.norm.bias")):
        if key in state:
            out[target] = state[key]
            report.map(key, target)
    convert_blocks(strip_prefix(state, "blocks."), "blocks.", "encoder.blocks.", depth, out, report, source)


def rgb_into_groups(state: State, model: nn.Module, bands: Sequence[str], report: ConversionReport,
                    keep_decoder: bool = True) -> dict[str, torch.Tensor]:
    """RGB MAE weights into band groups: the RGB projection feeds every group that holds a visible band."""
    source = report.source
    embedding = model.encoder.embedding
    weight = state["patch_embed.proj.weight"]
    if weight.shape[1] != 3:
        raise CheckpointFormatError(f"{source}: a {weight.shape[1]}-channel patch projection without band names; "
                                    f"only RGB (3 channels) maps onto bands by colour")
    out: dict[str, torch.Tensor] = {}
    plan = map_group_projection([weight], [state.get("patch_embed.proj.bias")], [RGB_CHANNELS], embedding, bands,
                                out, report, ["patch_embed.proj"])
    encoder_common(state, model, weight.shape[0], report, out, source)
    if "pos_embed" in state:
        report.drop("pos_embed", "position codes are computed per batch")
    if keep_decoder and "decoder_pred.weight" in state:
        area = weight.shape[-1] * weight.shape[-2]

        def pred(s: State) -> dict[str, torch.Tensor] | None:
            heads = group_heads([(s["decoder_pred.weight"], s["decoder_pred.bias"])], plan, model, area, True)
            for key in heads or {}:
                report.map("decoder_pred." + key.rsplit(".", 1)[1], key)
            return heads

        convert_mae_decoder(state, model, out, report, pred, source)
    return out


def rgb_into_bands(state: State, model: nn.Module, adapter: Any, report: ConversionReport,
                   keep_decoder: bool = True) -> dict[str, torch.Tensor]:
    """RGB MAE/timm weights into a band-group model or a model with one shared 2D projection."""
    bands = model_bands(adapter)
    if isinstance(model.encoder.embedding, BandGroupPatchEmbed):
        return rgb_into_groups(state, model, bands, report, keep_decoder)
    return convert_vit_mae(state, model, report, report.source, source_channels=RGB_CHANNELS,
                           target_channels=band_channels(bands), keep_decoder=keep_decoder)


def _convert_rgb_mae(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    return rgb_into_bands(state, model, adapter, report)


# ----- SatMAE group-channel model ------------------------------------------------------------------
def is_satmae_group(state: State) -> bool:
    return "channel_embed" in state and "patch_embed.0.proj.weight" in state


def satmae_source_groups(state: State, source: str) -> list[tuple[str, ...]]:
    """The band names of the checkpoint's groups: SatMAE's Sentinel-2 grouping when the group sizes fit."""
    sizes = []
    while f"patch_embed.{len(sizes)}.proj.weight" in state:
        sizes.append(int(state[f"patch_embed.{len(sizes)}.proj.weight"].shape[1]))
    if sizes != [len(g) for g in SATMAE_GROUPS]:
        raise CheckpointFormatError(f"{source}: band groups of sizes {sizes}; the published SatMAE grouping is "
                                    f"{[len(g) for g in SATMAE_GROUPS]} (B2 B3 B4 B8 | B5 B6 B7 B8A | B11 B12)")
    return [tuple(SATMAE_BANDS[i] for i in g) for g in SATMAE_GROUPS]


def _convert_satmae_group(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    source = report.source
    embedding = model.encoder.embedding
    if not isinstance(embedding, BandGroupPatchEmbed):
        raise CheckpointFormatError(f"{source}: SatMAE group-channel weights need a band-group model "
                                    f"(adapter remote_sensing.multispectral)")
    bands = model_bands(adapter)
    groups = satmae_source_groups(state, source)
    names = [f"patch_embed.{i}.proj" for i in range(len(groups))]
    weights = [state[f"{n}.weight"] for n in names]
    out: dict[str, torch.Tensor] = {}
    plan = map_group_projection(weights, [state.get(f"{n}.bias") for n in names], [band_channels(g) for g in groups],
                                embedding, bands, out, report, names)
    width = weights[0].shape[0]
    encoder_common(state, model, width, report, out, source)
    group_width = state["channel_embed"].shape[-1]
    report.adapt(f"pos_embed / channel_embed: fixed sin-cos (position {width - group_width} ++ group {group_width}) "
                 f"recomputed per batch (group code width = data.options.group_fraction x width: "
                 f"{group_width / width:g} reproduces SatMAE)")
    for key in ("pos_embed", "channel_embed", "decoder_pos_embed", "decoder_channel_embed"):
        if key in state:
            report.drop(key, "position and group codes are computed per batch")
    if [p[0] for p in plan] != list(range(len(plan))):
        report.note("the model's groups are in another order than SatMAE's: group codes differ from pretraining")
    area = weights[0].shape[-1] * weights[0].shape[-2]

    def pred(s: State) -> dict[str, torch.Tensor] | None:
        preds = [(s[f"decoder_pred.{i}.weight"], s[f"decoder_pred.{i}.bias"]) for i in range(len(groups))]
        heads = group_heads(preds, plan, model, area, channel_last=False)  # SatMAE: (c, p, q) per group
        if heads:
            for gi, (si, _) in enumerate(plan):
                if si is not None:
                    report.map(f"decoder_pred.{si}.weight", f"head.heads.{gi}.weight")
                    report.map(f"decoder_pred.{si}.bias", f"head.heads.{gi}.bias")
            report.adapt("decoder_pred.{i}: pixel rows reordered from SatMAE's (band, row, column) to (row, column, band)")
        return heads

    if convert_mae_decoder(state, model, out, report, pred, source):
        report.note("SatMAE gives the decoder's CLS token a group code; here it has none")
    return out


# ----- SatMAE temporal model -----------------------------------------------------------------------
def is_satmae_temporal(state: State) -> bool:
    pos, cls = state.get("pos_embed"), state.get("cls_token")
    return is_mae_state(state) and pos is not None and cls is not None and pos.shape[-1] == cls.shape[-1] - 384


def satmae_date_widths(state: State) -> tuple[int, int | None]:
    """The checkpoint's date-code widths: model width less the position table's, for encoder and decoder."""
    encoder = int(state["cls_token"].shape[-1] - state["pos_embed"].shape[-1])
    mask_token, table = state.get("mask_token"), state.get("decoder_pos_embed")
    decoder = None if mask_token is None or table is None else int(mask_token.shape[-1] - table.shape[-1])
    return encoder, decoder


def _convert_satmae_temporal(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    width = state["cls_token"].shape[-1]
    out = rgb_into_bands(state, model, adapter, report)
    encoder_dates, decoder_dates = satmae_date_widths(state)
    split = f"{encoder_dates} of {width} encoder dims" + (
        "" if decoder_dates is None else f", {decoder_dates} of {state['mask_token'].shape[-1]} decoder dims")
    report.adapt(f"pos_embed: SatMAE's position ++ date (year, month, hour) code ({split}) is computed per batch; "
                 "data.options.date_preset=satmae with date_fraction null reproduces its split")
    embedding = model.encoder.embedding
    preset = (getattr(adapter, "options", None) or {}).get("date_preset")
    if getattr(embedding, "date_mode", None) != "concat":
        report.note("this model adds its date code at full width (date_preset prithvi or date_code add), not SatMAE's "
                    "concatenated split: set data.options.date_preset=satmae")
        return out
    ours = (embedding.date_width(width), embedding.date_width(getattr(model.decoder, "decoder_embed_dim", width)))
    if preset != "satmae" or ours[0] != encoder_dates or (decoder_dates is not None and ours[1] != decoder_dates):
        report.note(f"this model codes dates as date_preset={preset or 'null'} in {ours[0]} encoder / {ours[1]} "
                    f"decoder dims, not as SatMAE ({encoder_dates} / {decoder_dates}): set "
                    "data.options.date_preset=satmae (date_fraction null) so the encoder sees the codes it was "
                    "trained with")
    return out


# ----- Prithvi -------------------------------------------------------------------------------------
def prithvi_state(state: State) -> dict[str, torch.Tensor]:
    """Prithvi-100M keys as they are; Prithvi-EO-2.0's ``encoder.`` / ``decoder.`` prefixes removed."""
    if "encoder.patch_embed.proj.weight" in state:
        return {k.split(".", 1)[1] if k.startswith(("encoder.", "decoder.")) else k: v for k, v in state.items()}
    return dict(state)


def is_prithvi(state: State) -> bool:
    weight = prithvi_state(state).get("patch_embed.proj.weight")
    return weight is not None and weight.ndim == 5


def _convert_prithvi(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    source = report.source
    state = prithvi_state(state)
    weight = state["patch_embed.proj.weight"]  # (D, C, tubelet, p, p)
    if weight.shape[2] != 1:
        raise CheckpointFormatError(f"{source}: Prithvi tubelets of {weight.shape[2]} frames; a frame-wise model "
                                    f"takes tubelets of 1")
    if weight.shape[1] != len(PRITHVI_BANDS):
        raise CheckpointFormatError(f"{source}: {weight.shape[1]} input bands; Prithvi-100M has 6 ({', '.join(PRITHVI_BANDS)})")
    flat = dict(state)
    flat["patch_embed.proj.weight"] = weight[:, :, 0]
    report.adapt("patch_embed.proj: Conv3d tubelet 1 x p x p -> Conv2d p x p shared by all frames")
    pred = flat.get("decoder_pred.weight")
    if pred is not None and pred.shape[0] != weight.shape[-1] * weight.shape[-2] * weight.shape[1]:
        raise CheckpointFormatError(f"{source}: decoder_pred has {pred.shape[0]} outputs, not one frame's p*p*C")
    flat.pop("pos_embed", None)
    flat.pop("decoder_pos_embed", None)
    out = convert_vit_mae(flat, model, report, source, source_channels=band_channels(PRITHVI_BANDS),
                          target_channels=band_channels(model_bands(adapter)))
    for key in ("pos_embed", "decoder_pos_embed"):
        if key in state:
            report.drop(key, "3D sin-cos table (x 6/16, y 6/16, frame 4/16 of the width)")
    report.adapt("position: Prithvi's 3D sin-cos over (frame, y, x) is replaced by the model's 2D sin-cos + date "
                 "code (data.options.date_code); continue pretraining so the blocks adapt")
    return out


# ----- Scale-MAE -----------------------------------------------------------------------------------
def is_scale_mae(state: State) -> bool:
    return is_mae_state(state) and any(k.startswith(("fpn.", "fcn_high.", "fcn_low.", "mask_token_decoder")) for k in state)


def _convert_scale_mae(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    out = rgb_into_bands(state, model, adapter, report, keep_decoder=False)
    for key in state:
        if key.startswith(("decoder_", "mask_token", "fpn.", "fcn", "pos_emb_projection")):
            report.drop(key, "Scale-MAE's FPN/FCN decoder has no counterpart")
    scale_aware = getattr(model.encoder.embedding, "reference_spacing", None) is not None
    report.adapt("position: Scale-MAE's GSD-scaled 2D sin-cos is computed per batch from each sample's GSD"
                 if scale_aware else
                 "position: this model does not scale positions by GSD (not remote_sensing.scale): the encoder "
                 "sees unscaled 2D sin-cos codes")
    return out


# ----- our own weights with other bands -------------------------------------------------------------
def own_key(key: str) -> str:
    """A checkpoint's key as it is; an export's encoder key (native or timm) under ``encoder.``."""
    if key.startswith("patch_embed."):
        key = "embedding." + key[len("patch_embed."):]
    return key if key.startswith(("encoder.", "decoder.", "head.")) else "encoder." + key


def _convert_other_bands(state: State, model: nn.Module, adapter: Any, report: ConversionReport) -> dict[str, torch.Tensor]:
    """One of our runs or exports trained on other bands (``report.source_info``: ``bands``, ``groups`` as
    band-name lists or None): projections and pixel heads mapped band by band, everything else as is."""
    source = report.source
    info = report.source_info
    if not info.get("bands"):
        raise CheckpointFormatError(f"{source}: the weights' band names are unknown (no run config beside them)")
    if "pos_embed" in state:  # a timm export's fixed table
        report.drop("pos_embed", "position codes are computed per batch")
    origin = {own_key(k): k for k in state if k != "pos_embed"}
    state = {new: state[old] for new, old in origin.items()}
    bands = model_bands(adapter)
    embedding = model.encoder.embedding
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    group_names = info.get("groups")
    if "encoder.embedding.projs.0.weight" in state:
        if not isinstance(embedding, BandGroupPatchEmbed) or not group_names:
            raise CheckpointFormatError(f"{source}: band-group weights need a band-group model "
                                        f"(adapter remote_sensing.multispectral)")
        names = [f"encoder.embedding.projs.{i}" for i in range(len(group_names))]
        source_groups = [band_channels(g) for g in group_names]
    else:
        names, source_groups = ["encoder.embedding.proj"], [band_channels(info["bands"])]
    weights = [state.pop(f"{n}.weight") for n in names]
    biases = [state.pop(f"{n}.bias", None) for n in names]
    area = weights[0].shape[-1] * weights[0].shape[-2]
    if isinstance(embedding, BandGroupPatchEmbed):
        plan = map_group_projection(weights, biases, source_groups, embedding, bands, out, report, names)
        preds = [(state.pop(f"head.heads.{i}.weight"), state.pop(f"head.heads.{i}.bias")) for i in range(len(names))
                 if f"head.heads.{i}.weight" in state]
        if len(names) == 1 and "head.pred.weight" in state:
            preds = [(state.pop("head.pred.weight"), state.pop("head.pred.bias"))]
        heads = group_heads(preds, plan, model, area, True) if len(preds) == len(names) else None
    else:
        if len(weights) != 1:
            raise CheckpointFormatError(f"{source}: band-group weights need a band-group model")
        target = band_channels(bands)
        matches = match_channels(source_groups[0], target)
        out["encoder.embedding.proj.weight"] = remap_input_channels(weights[0], matches)
        if biases[0] is not None:
            out["encoder.embedding.proj.bias"] = biases[0]
        report.adapt(f"patch projection: {describe_matches(source_groups[0], target, matches)}")
        heads = None
        if "head.pred.weight" in state and "head.pred.weight" in own:
            w, b = state.pop("head.pred.weight"), state.pop("head.pred.bias")
            heads = {"head.pred.weight": remap_pixel_head(w, area, matches, own["head.pred.weight"]),
                     "head.pred.bias": remap_pixel_head(b, area, matches, own["head.pred.bias"])}
    for n in names:
        report.map(origin[f"{n}.weight"], f"{n}.weight")
    for key, value in (heads or {}).items():
        out[key] = value
        report.map(origin.get(key, key), key)
    for key, value in state.items():
        if key in own and own[key].shape == value.shape and key not in out:
            out[key] = value
            report.map(origin[key], key)
        elif key not in out:
            report.drop(origin[key], "no place of that shape in this model")
    return out


RGB_MAE = Converter("mae", "RGB MAE / timm ViT weights, colours mapped onto bands by name", is_mae_state,
                    _convert_rgb_mae, adapters=RS_ADAPTERS, priority=0)
SATMAE_GROUP = Converter("satmae_group", "SatMAE group-channel MAE (Sentinel-2 band groups)", is_satmae_group,
                         _convert_satmae_group, adapters=("remote_sensing.multispectral",), priority=10)
SATMAE_TEMPORAL = Converter("satmae_temporal", "SatMAE temporal MAE (fMoW RGB frames)", is_satmae_temporal,
                            _convert_satmae_temporal, adapters=RS_ADAPTERS, priority=10)
PRITHVI = Converter("prithvi", "Prithvi-100M (HLS bands, 3D patches over time)", is_prithvi,
                    _convert_prithvi, adapters=("remote_sensing.temporal",), priority=10)
SCALE_MAE = Converter("scale_mae", "Scale-MAE encoder (GSD-scaled positions)", is_scale_mae,
                      _convert_scale_mae, adapters=RS_ADAPTERS, priority=10)
OTHER_BANDS = Converter("other_bands", "our own runs and exports trained on other bands", lambda state: False,
                        _convert_other_bands, adapters=RS_ADAPTERS)
