"""A run's ``eval`` config section as the defaults of ``mae-domains evaluate --run RUN``.

The section (:class:`mae_domains.config.EvalConfig`) maps onto protocol settings as follows; settings
given explicitly (``settings=``, ``--set``) still win, and a protocol only takes the keys it knows:

=================== ==========================================================
``knn_k``           ``k`` of ``knn``
``knn_temperature`` ``temperature`` of ``knn``
``probe_epochs``    ``epochs`` of ``linear_probe`` and ``multilabel_map``
``pool``            ``pool`` of every frozen-feature protocol (not ``finetune``,
                    whose average pooling is part of MAE's recipe)
``batch_size``      the loaders' batch size
``protocols``       the protocols run when none is named
``finetune.*``      the ``finetune`` protocol's settings of the same names
                    (those set, not None: e.g. MAE's recipe in
                    ``configs/image_vit_base.yaml``)
=================== ==========================================================

A section value that equals both :class:`~mae_domains.config.EvalConfig`'s default and the protocol's own
default is no choice (every run's ``config.yaml`` spells the defaults out), so it is left out and an
adapter's ``protocol_defaults`` (e.g. X-ray's average pooling) still apply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mae_domains.config import EvalConfig, load_config
from mae_domains.evaluation.metrics import REPORT_DEFAULTS
from mae_domains.protocols import get_protocol
from mae_domains.runs import CONFIG_NAME

SECTION_SETTINGS: dict[str, dict[str, str]] = {
    "knn_k": {"knn": "k"},
    "knn_temperature": {"knn": "temperature"},
    "probe_epochs": {"linear_probe": "epochs", "multilabel_map": "epochs"},
}


@dataclass
class RunEvalDefaults:
    """What a run's ``eval`` section asks for: per-protocol settings, batch size and protocol list."""

    section: dict[str, Any] = field(default_factory=dict)

    @property
    def protocols(self) -> list[str]:
        return [str(p) for p in self.section.get("protocols") or []]

    @property
    def batch_size(self) -> int | None:
        value = self.section.get("batch_size")
        return None if value is None else int(value)

    def settings(self, protocol: str) -> dict[str, Any]:
        """The section's values for ``protocol``, under the protocol's own setting names."""
        handler = get_protocol(protocol)
        known = handler.defaults()
        config_defaults = EvalConfig()
        out: dict[str, Any] = {}

        def take(section_key: str, setting: str) -> None:
            value = self.section[section_key]
            if value == getattr(config_defaults, section_key, object()) and value == known.get(setting, object()):
                return  # the defaults repeated: no choice of the run's
            out[setting] = value

        for key, targets in SECTION_SETTINGS.items():
            if key in self.section and protocol in targets and targets[protocol] in known:
                take(key, targets[protocol])
        if "pool" in self.section and "pool" in known and not handler.trains_encoder:
            take("pool", "pool")
        if protocol == "finetune":  # eval.finetune: the values a run sets (None = no choice)
            for key, value in (self.section.get("finetune") or {}).items():
                if value is not None and key in known:
                    out[key] = value
        return out


def run_config_path(checkpoint: str | os.PathLike) -> Path | None:
    """``config.yaml`` of a run folder, or of the folder holding a checkpoint file; None when absent."""
    path = Path(checkpoint)
    candidate = path / CONFIG_NAME if path.is_dir() else path.parent / CONFIG_NAME
    return candidate if candidate.is_file() else None


def run_eval_settings(checkpoint: str | os.PathLike) -> RunEvalDefaults:
    """The ``eval`` section of the run a checkpoint belongs to (empty when it has no ``config.yaml``)."""
    path = run_config_path(checkpoint)
    if path is None:
        return RunEvalDefaults()
    section = load_config(path).to_dict().get("eval") or {}
    return RunEvalDefaults(dict(section))


def merged_settings(defaults: RunEvalDefaults, protocols: Sequence[str],
                    explicit: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per protocol: the run's defaults overridden by the explicit settings. With several protocols an
    explicit setting goes to those that know it; one that none knows is left to the protocols' own check."""
    explicit = dict(explicit or {})
    known = {name: set(get_protocol(name).defaults()) | set(REPORT_DEFAULTS) for name in protocols}
    orphans = {k for k in explicit if not any(k in keys for keys in known.values())}
    out = {}
    for name in protocols:
        mine = {k: v for k, v in explicit.items() if len(protocols) == 1 or k in known[name] or k in orphans}
        out[name] = {**defaults.settings(name), **mine}
    return out
