"""What a resumed run may change: its config comes from the checkpoint, and overrides are checked
against it before anything is loaded or written.

Settings that shape the model, the data order, the optimizer or the normalization cannot change on resume
(the checkpoint would not fit, or the run would no longer be the one it continues); how long the run is,
how often it reports and where it computes can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mae_domains.config import ConfigError, RunConfig, config_from_dict, load_config
from mae_domains.runs.layout import CHECKPOINT_NAME
from mae_domains.weights import SAFE_GLOBALS, CheckpointFormatError, safe_torch_load

RESUMABLE = (
    "engine.max_steps", "engine.epochs", "engine.checkpoint_every", "engine.log_every", "engine.figure_every",
    "engine.tensorboard", "engine.device", "engine.precision", "engine.threads",
    "engine.activation_checkpointing", "engine.distributed",  # memory and sharding, not the arithmetic
    "engine.retain_host_memory",
    "data.num_workers", "data.pin_memory", "data.max_bad_fraction",
)
RESUMABLE_SECTIONS = ("eval.", "engine.online_knn.")  # evaluation settings do not touch pretraining


def may_change_on_resume(key: str) -> bool:
    return key in RESUMABLE or key.startswith(RESUMABLE_SECTIONS)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):  # an empty section adds no keys
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _normalized(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The saved config as this version reads it (new keys at their defaults); as saved if it no longer
    validates."""
    try:
        return config_from_dict(saved).to_dict()
    except ConfigError:
        return dict(saved)


def resume_changes(saved: Mapping[str, Any], config: RunConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, new value)}`` for every setting that differs."""
    before, after = flatten(_normalized(saved)), flatten(config.to_dict())
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def check_resume_config(saved: Mapping[str, Any], config: RunConfig, where: str | Path) -> None:
    """Raise :class:`ConfigError` (one line) when ``config`` changes a setting a resumed run must keep."""
    refused = {k: v for k, v in resume_changes(saved, config).items() if not may_change_on_resume(k)}
    if refused:
        changes = ", ".join(f"{k}={new!r} (the run has {old!r})" for k, (old, new) in refused.items())
        raise ConfigError(f"{where}: cannot resume with {changes}; on resume only these may change: "
                          f"{', '.join(RESUMABLE)}, eval.* and engine.online_knn.*; start a new run (--out) for the others")


def read_saved_config(run_dir: str | Path) -> dict[str, Any]:
    """The run config stored in ``run_dir``'s checkpoint, read without loading the tensors (memory-mapped)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: cannot resume, no {CHECKPOINT_NAME} (is it a run directory?)")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an old or broken file: the safe loader gives the clear message
        state = safe_torch_load(path)
    config = state.get("config") if isinstance(state, Mapping) else None
    if not isinstance(config, Mapping):
        raise CheckpointFormatError(f"{path}: not a run checkpoint of mae-domains (no run config inside; a plain "
                                    "state dict cannot be resumed)")
    return dict(config)


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The checkpoint's config with ``overrides`` applied, refused when they change what must stay."""
    saved = read_saved_config(run_dir)
    config = load_config(None, list(overrides), base=_normalized(saved))
    check_resume_config(saved, config, run_dir)
    return config
