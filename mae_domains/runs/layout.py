"""The files of a run directory and of an export folder, named in one place.

A run directory (``mae-domains pretrain --out DIR``) holds ``config.yaml`` (the resolved config),
``stats.json`` (normalization statistics), ``checkpoint.pt`` (full resume state: model, optimizer, step,
RNG, config, statistics), ``metrics.csv``, ``skipped.csv``, ``figures/``, and ``run.lock`` while a run
is using it. An export folder
(``mae-domains export``) holds ``encoder.safetensors``, ``config.json``, ``stats.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.yaml"
STATS_NAME = "stats.json"
METRICS_NAME = "metrics.csv"
SKIPPED_NAME = "skipped.csv"
FIGURES_DIR = "figures"
LOCK_NAME = "run.lock"

ENCODER_NAME = "encoder.safetensors"
EXPORT_CONFIG_NAME = "config.json"
MODEL_CARD_NAME = "MODEL_CARD.md"


def is_run_dir(path: str | Path) -> bool:
    """A folder with a checkpoint written by the engine."""
    return (Path(path) / CHECKPOINT_NAME).is_file()


def is_export_dir(path: str | Path) -> bool:
    """A folder written by ``mae-domains export``."""
    return (Path(path) / ENCODER_NAME).is_file()
