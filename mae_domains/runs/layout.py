"""The files of a run directory and of an export folder, named in one place.

A run directory (``mae-domains pretrain --out DIR``) holds ``config.yaml`` (the resolved config),
``stats.json`` (normalization statistics), ``checkpoint.pt`` (full resume state: model, optimizer, step,
RNG, config, statistics), ``metrics.csv``, ``skipped.csv``, ``figures/``, and ``run.lock`` while a run
is using it. An export folder
(``mae-domains export``) holds ``encoder.safetensors``, ``config.json``, ``stats.json`` and ``MODEL_CARD.md``;
one in the ``hf`` layout (a Hub model repository) ``model.safetensors``, ``config.json``, ``stats.json`` and
``README.md``.
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
# The ``hf`` export layout (a Hugging Face Hub model repository, mae_domains.runs.hub): weights and card.
HF_WEIGHTS_NAME = "model.safetensors"
HF_CARD_NAME = "README.md"

HF_LAYOUT = "hf"  # export --format hf: a Hugging Face Hub model repository

def is_run_dir(path: str | Path) -> bool:
    """A folder with a checkpoint written by the engine."""
    return (Path(path) / CHECKPOINT_NAME).is_file()


def is_export_dir(path: str | Path) -> bool:
    """A folder written by ``mae-domains export`` (either layout)."""
    path = Path(path)
    return (path / ENCODER_NAME).is_file() or ((path / HF_WEIGHTS_NAME).is_file() and (path / EXPORT_CONFIG_NAME).is_file())


def export_weights_file(path: str | Path) -> Path:
    """The weights file of an export folder: ``encoder.safetensors``, else the ``hf`` layout's."""
    path = Path(path)
    return path / ENCODER_NAME if (path / ENCODER_NAME).is_file() else path / HF_WEIGHTS_NAME
