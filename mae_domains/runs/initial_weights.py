"""Initial weights of a new run (``mae-domains pretrain --init PATH_OR_NAME``) and of a model to evaluate:
one of our runs, checkpoints or exports, or a published checkpoint converted by its family's converter
(``FAMILY:PATH``, or found from the key names). The report says what was loaded, adapted and left at
initialization; encoder-only weights leave the decoder fresh, and the report says so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from mae_domains.conversion import ConversionReport, convert_into, find_converter, split_family
from mae_domains.runs.encoder_weights import load_pretrained_weights
from mae_domains.config import ConfigError
from mae_domains.registry import AdapterNotFound, get_adapter
from mae_domains.runs.model import describe_load_error, grid_hw, resolve_config
from mae_domains.runs.weight_files import WeightsSource, open_weights
from mae_domains.weights import CheckpointFormatError

log = logging.getLogger(__name__)
OWN_KINDS = ("checkpoint", "export")


def needs_conversion(source: WeightsSource, adapter: Any, family: str | None) -> bool:
    """Foreign weights go through a converter when a family is named or one recognizes them for this
    adapter (the original MAE, band-aware RGB loading, SatMAE, Prithvi, MONAI, ...); our own checkpoints,
    exports and state dicts under our keys load directly."""
    if family is not None:
        return True
    if source.kind in OWN_KINDS:
        return False
    try:
        find_converter(source.state, str(getattr(adapter, "name", "")), None, str(source.path))
    except CheckpointFormatError:
        return False
    return True


def load_own_weights(model: nn.Module, source: WeightsSource, config: Any) -> ConversionReport:
    """One of our checkpoints (the whole MAE, strictly when it fits, else encoder + fitting decoder parts)
    or an export / foreign MAE-keyed weights (encoder strictly, decoder where name and shape fit)."""
    report = ConversionReport(f"mae_domains {source.kind}", str(source.path), str(getattr(config, "adapter", "")))
    own = model.state_dict()
    if source.kind == "checkpoint":
        try:
            model.load_state_dict(source.state)
            report.mapped = [(k, k) for k in source.state]
            return report
        except RuntimeError as err:
            report.note(f"the checkpoint's model differs from this run's ({describe_load_error(err, 1)}); its "
                        f"encoder is loaded, decoder weights where they fit")
    load_pretrained_weights(model, source.state, grid_hw(config))
    loaded = {k for k, v in model.state_dict().items() if k.startswith("encoder.")}
    state_keys = {k.removeprefix("module.") for k in source.state}
    loaded |= {k for k in own if not k.startswith("encoder.") and k in state_keys
               and source.state.get(k, source.state.get("module." + k)).shape == own[k].shape}
    report.mapped = [(k, k) for k in sorted(loaded)]
    report.initialized = [k for k in own if k not in loaded]
    return report


def band_layout(adapter: Any) -> dict[str, Any] | None:
    """An adapter's band names and band groups (lists of names), None when it has no bands."""
    bands = getattr(adapter, "bands", None)
    if not bands:
        return None
    groups = getattr(adapter, "groups", None)
    return {"bands": [str(b) for b in bands], "groups": [[str(b) for b in g] for g in groups] if groups else None}


def source_band_layout(source: WeightsSource) -> dict[str, Any] | None:
    """The bands our own weights were trained on, from the run config that travels with them."""
    if not source.config:
        return None
    try:
        config = resolve_config(source.config)
        return band_layout(get_adapter(config.adapter, config.data.options))
    except (ConfigError, AdapterNotFound, ValueError, TypeError):
        return None


def load_initial_weights(model: nn.Module, spec: str | Path, adapter: Any, config: Any,
                         source: WeightsSource | None = None) -> ConversionReport:
    """Load ``spec`` (``PATH`` or ``FAMILY:PATH``) into ``model`` (built by ``adapter`` from ``config``) and
    log what happened; unknown families, unreadable files and weights that do not fit raise a one-line
    :class:`CheckpointFormatError` / ``FileNotFoundError``. ``source``: the weights if already read."""
    family, path = split_family(str(spec))
    source = source or open_weights(Path(path).expanduser())
    source_bands, target_bands = (source_band_layout(source), band_layout(adapter)) if source.kind in OWN_KINDS \
        else (None, None)
    if family is None and source_bands and target_bands and source_bands != target_bands:
        report = convert_into(model, source.state, adapter, "other_bands", source.path, source_bands)
    elif needs_conversion(source, adapter, family):
        report = convert_into(model, source.state, adapter, family, source.path)
    else:
        report = load_own_weights(model, source, config)
        for line in report.lines():
            log.info(line)
    if report.decoder_initialized:
        log.warning("initial weights from %s hold no fitting decoder: the decoder starts fresh", source.path)
    return report
