"""What a path holds: a run folder, an engine checkpoint, an export folder or its weights, or foreign weights.

:func:`open_weights` reads the weights and everything known about them (run config, normalization
statistics, adapter name, step) without building a model; :mod:`mae_domains.runs.model` builds it.

- ``checkpoint``: the engine's ``checkpoint.pt`` (the full model; config and statistics inside, or in the
  run folder's ``config.yaml`` / ``stats.json``);
- ``export``: ``encoder.safetensors`` of ``mae-domains export`` (encoder weights; the run config in its
  metadata, a ``<stem>.json`` or ``config.json`` beside it, or the folder's ``config.yaml``);
- ``foreign``: any other MAE or timm weights (``.pth`` / ``.safetensors``); the run config must be given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from mae_domains.weights import check_finite_weights
from mae_domains.runs.layout import (
    CHECKPOINT_NAME, CONFIG_NAME, ENCODER_NAME, EXPORT_CONFIG_NAME, STATS_NAME, export_weights_file, is_export_dir,
    is_run_dir,
)
from mae_domains.weights import CheckpointFormatError, extract_state_dict, load_safetensors, safe_torch_load

INFO_KEYS = ("config", "stats", "adapter", "step", "format")
INFO_TYPES = {"config": (dict, "a JSON object"), "stats": (dict, "a JSON object"), "adapter": (str, "a string"),
              "step": (int, "an integer"), "format": (str, "a string")}


@dataclass
class WeightsSource:
    """Weights read from ``path`` and what is known about them (``None`` where nothing was found).

    ``state`` is the full model's state dict for a ``checkpoint``, encoder weights (timm or our own keys)
    for an ``export``, and whatever the file holds for ``foreign`` weights."""

    kind: str
    path: Path
    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    adapter: str | None = None
    step: int | None = None
    weights_format: str | None = None


def weights_file(path: str | Path) -> Path:
    """The weights file of a run folder (``checkpoint.pt``), an export folder (``encoder.safetensors``)
    or the file itself."""
    path = Path(path)
    if path.is_dir():
        if is_run_dir(path):
            return path / CHECKPOINT_NAME
        if is_export_dir(path):
            return export_weights_file(path)
        raise FileNotFoundError(f"{path}: not a run directory (no {CHECKPOINT_NAME}) nor an export folder "
                                f"(no {ENCODER_NAME})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a run directory, checkpoint or export (no such file or folder)")
    return path


def open_weights(path: str | Path) -> WeightsSource:
    """Read the weights at ``path`` (a folder or a file) and what is known about them; weights holding
    NaN/Inf and unreadable files are refused with :class:`CheckpointFormatError` naming the file."""
    source = _read_weights(weights_file(path))
    check_finite_weights(source.state, source.path)
    return source


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        return load_safetensors(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors' own error type: a torn or foreign file
        raise CheckpointFormatError(f"{path}: not a readable safetensors file ({err})") from None


def _read_weights(path: Path) -> WeightsSource:
    if path.suffix == ".safetensors":
        tensors, metadata = _read_safetensors(path)
        info = read_export_info(path, metadata)
        kind = "export" if info.get("config") or info.get("format") else "foreign"
        return _source(kind, path, tensors, info)
    state = safe_torch_load(path)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        info = {k: state[k] for k in INFO_KEYS if k in state}
        if "config" not in info and (path.parent / CONFIG_NAME).is_file():
            info["config"] = yaml.safe_load((path.parent / CONFIG_NAME).read_text())
        _stats_beside(path, info)
        kind = "checkpoint" if "config" in info else "foreign"
        weights = state["model"] if kind == "checkpoint" else extract_state_dict(state, path)
        return _source(kind, path, dict(weights), info)
    try:
        weights = extract_state_dict(state, path)
    except CheckpointFormatError:
        raise CheckpointFormatError(f"{path}: no model weights in checkpoint") from None
    return _source("foreign", path, weights, {})


def _source(kind: str, path: Path, state: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> WeightsSource:
    step = info.get("step")
    return WeightsSource(kind, path, dict(state), info.get("config"), info.get("stats") or None,
                         info.get("adapter"), None if step is None else int(step), info.get("format"))


def _stats_beside(path: Path, info: dict[str, Any]) -> None:
    if not info.get("stats") and (path.parent / STATS_NAME).is_file():
        info["stats"] = json.loads((path.parent / STATS_NAME).read_text())


def _json_or_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def run_config_from_export(info: Mapping[str, Any]) -> dict[str, Any]:
    """A run config dict from an export's ``config.json``: its ``run_config`` when present, else built
    from the flat fields (``preset``, ``patch_size``, ...) that older exports hold."""
    if isinstance(info.get("run_config"), Mapping):
        return dict(info["run_config"])
    model = {k: info[k] for k in ("preset", "patch_size", "img_size", "in_chans", "norm_pix_loss") if k in info}
    config: dict[str, Any] = {"adapter": info.get("adapter", "image"), "model": model,
                              "data": {"sources": list(info.get("data_sources", [])),
                                       "options": dict(info.get("adapter_options", {}))}}
    if info.get("mask_ratio") is not None:
        config["mask"] = {"ratio": info["mask_ratio"]}
    return config


def is_export_config(config: Any) -> bool:
    """The export's ``config.json`` layout (flat fields), as opposed to a run config (``model:`` section)."""
    return isinstance(config, Mapping) and "model" not in config and ("preset" in config or "run_config" in config)


def read_export_info(path: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    """config / stats / adapter / step / format of a safetensors file, from (first found) its metadata,
    ``<stem>.json`` or ``config.json`` beside it, or the folder's ``config.yaml`` / ``stats.json``. The
    export's ``config.json`` layout is converted to a run config."""
    info = {k: _json_or_value(v) for k, v in metadata.items() if k in INFO_KEYS}
    if "config" not in info:
        for sidecar in (path.with_suffix(".json"), path.parent / EXPORT_CONFIG_NAME):
            if sidecar.is_file():
                loaded = json.loads(sidecar.read_text())
                info["config"] = loaded.get("config", loaded)
                for key in ("stats", "adapter", "step", "format"):
                    if key in loaded:
                        info.setdefault(key, loaded[key])
                break
    if "config" not in info and (path.parent / CONFIG_NAME).is_file():
        info["config"] = yaml.safe_load((path.parent / CONFIG_NAME).read_text())
    config = info.get("config")
    if is_export_config(config):
        info.setdefault("stats", config.get("normalization"))
        info.setdefault("step", config.get("pretrain_steps"))
        info.setdefault("adapter", config.get("adapter"))
        info.setdefault("format", config.get("format"))
        info["config"] = run_config_from_export(config)
    _stats_beside(path, info)
    check_info_types(path, info)
    return {k: v for k, v in info.items() if v is not None}


def check_info_types(path: Path, info: Mapping[str, Any]) -> None:
    """Refuse, naming the file and the field, metadata of the wrong kind (a ``config`` that is a string)."""
    for key, (kind, described) in INFO_TYPES.items():
        value = info.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise CheckpointFormatError(f"{path}: metadata field {key!r} is {type(value).__name__} "
                                        f"{str(value)[:40]!r}, expected {described}")
