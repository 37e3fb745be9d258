"""Open a finished (or running) run directory: its config, adapter, statistics and model weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mae_domains.config import RunConfig, load_config
from mae_domains.data.sample import NormStats
from mae_domains.engine.checkpoint import CHECKPOINT_NAME
from mae_domains.weights import CheckpointFormatError, safe_torch_load


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    adapter: Any
    model: torch.nn.Module
    stats: NormStats
    step: int


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild the model of a run from ``config.yaml`` and ``checkpoint.pt`` (loaded with weights_only)."""
    from mae_domains.registry import get_adapter

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.yaml)")
    config = load_config(config_path)
    state = safe_torch_load(run_dir / CHECKPOINT_NAME)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointFormatError(f"{run_dir / CHECKPOINT_NAME}: no model weights in checkpoint")
    adapter = get_adapter(config.adapter, config.data.options).bind(config)
    model = adapter.build_model(config.model, config.mask)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    stats_dict = state.get("stats")
    if stats_dict is None and (run_dir / "stats.json").is_file():
        stats_dict = json.loads((run_dir / "stats.json").read_text())
    if stats_dict is None:
        raise CheckpointFormatError(f"{run_dir}: no normalization statistics in checkpoint or stats.json")
    return LoadedRun(run_dir, config, adapter, model, NormStats.from_dict(stats_dict), int(state.get("step", 0)))
