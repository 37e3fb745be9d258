"""Safe weight I/O: original MAE checkpoints, timm state dicts and safetensors.

Nothing here fully unpickles a file. ``torch.load`` always runs with ``weights_only=True``; the
original MAE checkpoints pickle an ``argparse.Namespace`` beside the weights, so that one class is
allow-listed, and any other object in the pickle is refused with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
from safetensors.torch import load_file, save_file
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

from mae_domains.grid.pos_embed import sincos_2d_with_prefix

log = logging.getLogger(__name__)

SAFE_GLOBALS: tuple[Any, ...] = (argparse.Namespace,)

# Original MAE (facebookresearch/mae models_mae.py) key prefixes -> ours.
_DECODER_RENAMES = {
    "mask_token": "decoder.mask_token",
    "decoder_embed.": "decoder.embed.",
    "decoder_pos_embed": "decoder.pos_embed",
    "decoder_blocks.": "decoder.blocks.",
    "decoder_norm.": "decoder.norm.",
    "decoder_pred.": "decoder.pred.",
}
_ENCODER_PREFIXES = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
_CLASSIFIER_PREFIXES = ("head.", "fc_norm.", "head_drop.")


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds pickled objects outside the allow-list (it could run code when loaded)."""


class CheckpointFormatError(ValueError):
    """A checkpoint loaded safely but does not hold what was expected."""


def safe_torch_load(path: str | os.PathLike, extra_safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load`` with ``weights_only=True`` and an explicit allow-list; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    allowed = list(SAFE_GLOBALS) + list(extra_safe_globals)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        detail = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), first_line)
        raise UnsafeCheckpointError(
            f"{path}: refused to load: the pickle holds objects outside the allow-list "
            f"({detail}). Loading it fully could run arbitrary code; if you trust the file, convert it "
            f"to safetensors in a separate, sandboxed step."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointFormatError(f"{path}: not a readable PyTorch checkpoint ({err})") from None


def extract_state_dict(checkpoint: Any, path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The weights inside a loaded checkpoint: ``{'model': sd}``, ``{'state_dict': sd}`` or a bare sd."""
    if isinstance(checkpoint, Mapping):
        for key in ("model", "state_dict", "model_state"):
            if key in checkpoint and isinstance(checkpoint[key], Mapping):
                checkpoint = checkpoint[key]
                break
        tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return {k.removeprefix("module."): v for k, v in tensors.items()}
    raise CheckpointFormatError(f"{path}: no tensors found (expected a state dict or {{'model': state_dict}})")


def convert_original_mae_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename original MAE keys (flat ``decoder_*``) to ``encoder.*`` / ``decoder.*``; drop classifier heads."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(("encoder.", "decoder.")):
            out[key] = value
            continue
        renamed = next((new + key[len(old):] for old, new in _DECODER_RENAMES.items() if key.startswith(old)), None)
        if renamed is not None:
            out[renamed] = value
        elif key.startswith(_ENCODER_PREFIXES):
            out["encoder." + key] = value
        elif not key.startswith(_CLASSIFIER_PREFIXES):
            log.warning("ignoring unexpected checkpoint key %s", key)
    return out


# The plain MAE layout (``encoder.patch_embed``, ``decoder.pred``) -> the grid stack's (``GridMAE`` around a
# ``PatchEmbed2D``). The fixed sin-cos tables are dropped: the grid stack computes its codes per batch.
_PLAIN_TO_GRID = {"encoder.patch_embed.proj.": "encoder.embedding.proj.", "decoder.pred.": "head.pred."}
_FIXED_TABLES = ("encoder.pos_embed", "decoder.pos_embed")


def is_grid_model(model: torch.nn.Module) -> bool:
    """True for a GridMAE (its encoder has a grid ``embedding``), False for the plain reference MAE."""
    return hasattr(getattr(model, "encoder", None), "embedding")


def plain_to_grid_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain-MAE keys (ours, or original ones after :func:`convert_original_mae_keys`) -> GridMAE keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key in _FIXED_TABLES:
            continue
        renamed = next((new + key[len(old):] for old, new in _PLAIN_TO_GRID.items() if key.startswith(old)), key)
        out[renamed] = value
    return out


def adapt_grid_state_dict(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Fit 2D MAE weights to a GridMAE: input channels of the patch projection and of the pixel head."""
    out = plain_to_grid_keys(state_dict)
    embedding = model.encoder.embedding
    in_chans, patch_area = int(embedding.in_chans), int(embedding.patch_size) ** 2
    target = model.state_dict()
    if "encoder.embedding.proj.weight" in out:
        out["encoder.embedding.proj.weight"] = adapt_patch_embed_weight(out["encoder.embedding.proj.weight"], in_chans)
    for key in ("head.pred.weight", "head.pred.bias"):
        if key in out and key in target and out[key].shape != target[key].shape:
            out[key] = adapt_pixel_head(out[key], patch_area, in_chans)
    return out


def adapt_patch_embed_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Conv weight (D, C_src, p, p) -> (D, in_chans, p, p): summed for 1 channel, tiled and rescaled
    by C_src / in_chans otherwise (timm's ``adapt_input_conv``)."""
    if weight.shape[1] == in_chans:
        return weight
    return adapt_input_conv(in_chans, weight.float(), base_chans=weight.shape[1]).to(weight.dtype)


def adapt_pixel_head(tensor: torch.Tensor, patch_area: int, in_chans: int) -> torch.Tensor:
    """Decoder prediction weight/bias laid out per (p, q, c): average the source channels for one
    target channel, cycle them for several."""
    src_chans = tensor.shape[0] // patch_area
    if src_chans == in_chans:
        return tensor
    per_channel = tensor.reshape(patch_area, src_chans, *tensor.shape[1:])
    if in_chans == 1:
        adapted = per_channel.mean(dim=1, keepdim=True)
    else:
        adapted = per_channel[:, [i % src_chans for i in range(in_chans)]]
    return adapted.reshape(patch_area * in_chans, *tensor.shape[1:])


def resample_pos_table(table: torch.Tensor, grid_hw: tuple[int, int], mode: str, fixed_dim: int | None = None) -> torch.Tensor:
    """A ``(1, 1 + N, D)`` table for another grid: ``recompute`` the sin-cos at the same spacing (larger
    extent) or ``interpolate`` it (same extent, timm's bicubic resampling)."""
    if table.shape[1] - 1 == grid_hw[0] * grid_hw[1]:
        return table
    if mode == "recompute":
        return sincos_2d_with_prefix(fixed_dim or table.shape[-1], grid_hw).to(table.dtype)
    if mode == "interpolate":
        return resample_abs_pos_embed(table.float(), list(grid_hw), num_prefix_tokens=1).to(table.dtype)
    raise ValueError(f"unknown position resampling {mode!r}; use 'recompute' or 'interpolate'")


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module, pos_resample: str = "recompute"
) -> dict[str, torch.Tensor]:
    """Fit MAE weights (ours or converted original) to ``model``: input channels, decoder pixel head and
    position tables for another image size."""
    target = model.state_dict()
    out = dict(state_dict)
    in_chans = model.encoder.in_chans
    patch_area = model.encoder.patch_size**2
    if "encoder.patch_embed.proj.weight" in out:
        out["encoder.patch_embed.proj.weight"] = adapt_patch_embed_weight(out["encoder.patch_embed.proj.weight"], in_chans)
    for key in ("decoder.pred.weight", "decoder.pred.bias"):
        if key in out and key in target and out[key].shape != target[key].shape:
            out[key] = adapt_pixel_head(out[key], patch_area, in_chans)
    for key, grid in (("encoder.pos_embed", model.encoder.grid_size), ("decoder.pos_embed", model.decoder.grid_size)):
        if key in out and key in target and out[key].shape != target[key].shape:
            out[key] = resample_pos_table(out[key], grid, pos_resample)
    return out


def load_mae_checkpoint(
    model: torch.nn.Module, path: str | os.PathLike, pos_resample: str = "recompute", strict: bool = True
) -> dict[str, list[str]]:
    """Load an original MAE pretraining checkpoint (``{'model': ..., 'args': Namespace}``), one of ours
    (``.pt`` or ``.safetensors``) into ``model``; returns missing/unexpected keys."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state_dict = load_file(str(path))
    else:
        state_dict = extract_state_dict(safe_torch_load(path), path)
    check_finite_weights(state_dict, path)
    state_dict = convert_original_mae_keys(state_dict)
    if is_grid_model(model):  # position codes are computed per batch: nothing to resample
        state_dict = adapt_grid_state_dict(state_dict, model)
    else:
        state_dict = adapt_state_dict(state_dict, model, pos_resample)
    target = model.state_dict()
    bad = [k for k, v in state_dict.items() if k in target and v.shape != target[k].shape]
    if bad:
        details = ", ".join(f"{k} {tuple(state_dict[k].shape)} vs {tuple(target[k].shape)}" for k in bad[:4])
        raise CheckpointFormatError(f"{path}: weights do not fit the model: {details}")
    result = model.load_state_dict(state_dict, strict=strict)
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}


def encoder_state_dict_for_timm(model: torch.nn.Module, grid_hw: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Encoder weights under timm ``VisionTransformer`` keys (load with ``strict=False`` for the head). A
    grid encoder needs the patch grid ``grid_hw`` its fixed ``pos_embed`` table is written for."""
    encoder = getattr(model, "encoder", model)
    if hasattr(encoder, "timm_state_dict"):
        if grid_hw is None:
            raise ValueError("a grid encoder's timm weights need grid_hw, the patch grid of the input size")
        return {k: v.detach().clone() for k, v in encoder.timm_state_dict(grid_hw).items()}
    return {k: v.detach().clone() for k, v in encoder.state_dict().items()}


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write tensors (contiguous copies) with JSON-encoded metadata, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw string metadata of a safetensors file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    return load_file(str(path)), metadata


# Weights holding NaN or Inf are refused on load, naming the file and the tensors: a poisoned model
# would otherwise embed, evaluate (at chance) and resume without a word.
def tensors_in(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of a nested mapping/list (a state dict, an optimizer state), with a dotted name."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from tensors_in(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from tensors_in(value, f"{prefix}.{i}" if prefix else str(i))


def non_finite_tensors(obj: Any) -> list[tuple[str, int, int]]:
    """``(name, non-finite count, size)`` of the floating-point tensors that hold NaN or Inf."""
    bad = []
    for name, tensor in tensors_in(obj):
        if tensor.is_floating_point() or tensor.is_complex():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad.append((name, count, tensor.numel()))
    return bad


def check_finite_weights(obj: Any, path: str | Path, what: str = "weights") -> None:
    """Raise :class:`CheckpointFormatError` naming ``path`` and the first tensors with NaN/Inf values."""
    bad = non_finite_tensors(obj)
    if bad:
        named = ", ".join(f"{name} ({count} of {size})" for name, count, size in bad[:3])
        more = f" and {len(bad) - 3} more tensors" if len(bad) > 3 else ""
        raise CheckpointFormatError(f"{path}: refused to load: the {what} hold NaN/Inf values in {named}{more}")
