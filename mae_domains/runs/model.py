"""Rebuild a ready-to-embed model from a run folder, a ``checkpoint.pt``, an export folder or its weights,
a Hub model id (or foreign MAE/timm weights plus a run config): :func:`load_model`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mae_domains.config import RunConfig, config_from_dict
from mae_domains.data.sample import NormStats
from mae_domains.registry import get_adapter
from mae_domains.runs.encoder_weights import load_pretrained_weights
from mae_domains.runs.hub import download_hub_model, is_hub_id
from mae_domains.runs.layout import CONFIG_NAME
from mae_domains.runs.weight_files import WeightsSource, is_export_config, open_weights, run_config_from_export
from mae_domains.weights import CheckpointFormatError


@dataclass
class LoadedModel:
    """A model in eval mode with its bound adapter, statistics and config.

    ``kind`` says what was loaded (``checkpoint``: the whole MAE; ``export`` / ``foreign``: the encoder,
    with decoder weights only where the file had fitting ones); ``source`` is the weights file."""

    adapter: Any
    model: nn.Module
    stats: NormStats | None
    config: RunConfig
    step: int | None
    source: Path
    kind: str = "checkpoint"

    @property
    def encoder(self) -> nn.Module:
        """The encoder: ``encoder(x)`` is the CLS embedding ``(B, D)`` of a normalized batch,
        ``encoder.forward_features(x)`` every token ``(B, 1 + N, D)``."""
        return self.model.encoder

    @property
    def has_decoder(self) -> bool:
        """Whether the decoder is trained (reconstructions are meaningful)."""
        return self.kind == "checkpoint"


def resolve_config(config: RunConfig | Mapping[str, Any], adapter_name: str | None = None) -> RunConfig:
    """A validated :class:`RunConfig` from a config object, a run config dict or an export's ``config.json``;
    ``adapter_name`` replaces the adapter."""
    if isinstance(config, RunConfig):
        data = config.to_dict()
    else:
        data = run_config_from_export(config) if is_export_config(config) else dict(config)
    if adapter_name:
        data["adapter"] = adapter_name
    return config_from_dict(data)


def build_model(config: RunConfig | Mapping[str, Any], adapter_name: str | None = None,
                seed: int = 0) -> tuple[Any, nn.Module, RunConfig]:
    """Bound adapter, freshly initialized model (from ``seed``; torch's global RNG is left as it was) and
    the resolved config."""
    run_config = resolve_config(config, adapter_name)
    adapter = get_adapter(run_config.adapter, run_config.data.options).bind(run_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = adapter.build_model(run_config.model, run_config.mask)
    return adapter, model, run_config


def grid_hw(config: RunConfig) -> tuple[int, int]:
    """The 2D token grid of the configured input size (for timm's fixed position table)."""
    side = int(config.model.img_size) // int(config.model.patch_size)
    return side, side


def describe_load_error(err: BaseException, limit: int = 2) -> str:
    """``load_state_dict``'s many-line error as one line: its first ``limit`` mismatches."""
    lines = [ln.strip().rstrip(".") for ln in str(err).splitlines()[1:] if ln.strip()]
    lines = [ln if len(ln) <= 240 else ln[:237] + "..." for ln in lines]
    if not lines:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def model_from_source(source: WeightsSource, device: torch.device | str = "cpu",
                      config: RunConfig | Mapping[str, Any] | None = None, adapter_name: str | None = None) -> LoadedModel:
    """Build the model for weights already read by :func:`~mae_domains.runs.weight_files.open_weights`."""
    config_data = config if config is not None else source.config
    if not config_data:
        raise CheckpointFormatError(f"{source.path}: no run config found beside the weights; give one (a run "
                                    f"config, or 'config:' and 'adapter:' in a benchmark entry)")
    adapter, model, run_config = build_model(config_data, adapter_name or source.adapter)
    if source.kind == "checkpoint":
        try:
            model.load_state_dict(source.state)
        except RuntimeError as err:
            raise CheckpointFormatError(f"{source.path}: the weights do not fit the model of its config "
                                        f"({describe_load_error(err)})") from None
    else:
        load_pretrained_weights(model, source.state, grid_hw(run_config))
    stats = NormStats.from_dict(source.stats) if source.stats else None
    return LoadedModel(adapter, model.to(device).eval(), stats, run_config, source.step, source.path, source.kind)


def load_model(path: str | Path, device: torch.device | str = "cpu", *,
               config: RunConfig | Mapping[str, Any] | None = None, adapter_name: str | None = None) -> LoadedModel:
    """The model behind ``path``: a run folder, its ``checkpoint.pt``, an export folder (either layout), its
    weights file, a Hub model id ``hf-hub:<owner>/<name>[@revision]`` (needs ``huggingface_hub``), or
    foreign MAE/timm weights (then ``config`` is needed). ``config`` replaces the config found with the
    weights; ``adapter_name`` the adapter."""
    if is_hub_id(path):
        path = download_hub_model(str(path))
    return model_from_source(open_weights(path), device, config, adapter_name)


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """A run folder's trained MAE (encoder and decoder), with normalization statistics."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {CONFIG_NAME})")
    loaded = load_model(run_dir, device)
    if loaded.stats is None:
        raise CheckpointFormatError(f"{run_dir}: no normalization statistics in checkpoint or stats.json")
    return loaded
