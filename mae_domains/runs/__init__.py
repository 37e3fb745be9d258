"""Run directories and exports: file names, opening a run, rebuilding its model, export and export
detection. :func:`load_model` turns any of a run folder, a ``checkpoint.pt``, an export folder or its
``encoder.safetensors`` into a ready-to-embed model."""

from mae_domains.runs.export import export_info, export_run
from mae_domains.runs.layout import (
    CHECKPOINT_NAME, CONFIG_NAME, ENCODER_NAME, EXPORT_CONFIG_NAME, FIGURES_DIR, METRICS_NAME, MODEL_CARD_NAME,
    SKIPPED_NAME, STATS_NAME, is_export_dir, is_run_dir,
)
from mae_domains.runs.model import LoadedModel, build_model, load_model, load_run, model_from_source, resolve_config
from mae_domains.runs.model_card import ModelCardInfo, model_card_from_checkpoint, render_model_card, write_model_card
from mae_domains.runs.weight_files import WeightsSource, open_weights, read_export_info, run_config_from_export

__all__ = [
    "CHECKPOINT_NAME", "CONFIG_NAME", "ENCODER_NAME", "EXPORT_CONFIG_NAME", "FIGURES_DIR", "METRICS_NAME",
    "MODEL_CARD_NAME", "SKIPPED_NAME", "STATS_NAME", "is_export_dir", "is_run_dir",
    "LoadedModel", "build_model", "load_model", "load_run", "model_from_source", "resolve_config",
    "export_info", "export_run", "ModelCardInfo", "model_card_from_checkpoint", "render_model_card",
    "write_model_card", "WeightsSource", "open_weights", "read_export_info", "run_config_from_export",
]
