"""Markdown model cards for exported checkpoints: architecture, input contract, pretraining, results.

The input contract is what a user must reproduce to get the published numbers: channels/bands in order
with their normalization statistics, patch size and input size, physical spacing or GSD where the adapter
has one. Results come from :class:`ResultRecord` lists (mean ± std over seeds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import mae_domains
from mae_domains.evaluation.records import ResultRecord, render_markdown

SPACING_OPTION_KEYS = ("gsd", "ground_sample_distance", "spacing", "target_spacing", "voxel_spacing", "pixel_size")
CHANNEL_OPTION_KEYS = ("channels", "channel_names", "bands", "band_names")


@dataclass
class ModelCardInfo:
    """What a model card states about one exported checkpoint."""

    name: str
    adapter: str = ""
    preset: str = ""
    patch_size: int | None = None
    img_size: int | None = None
    in_chans: int | None = None
    mask_ratio: float | None = None
    mask_strategy: str = ""
    norm_pix_loss: bool | None = None
    channels: list[str] = field(default_factory=list)
    normalization_mean: list[float] = field(default_factory=list)
    normalization_std: list[float] = field(default_factory=list)
    spacing: str = ""
    pretraining_data: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    weights_file: str = ""
    version: str = mae_domains.__version__
    notes: str = ""

    @classmethod
    def from_run(cls, name: str, config: Mapping[str, Any], stats: Mapping[str, Any] | None = None,
                 adapter: str | None = None, step: int | None = None, weights_file: str = "",
                 extra_data: Mapping[str, Any] | None = None) -> "ModelCardInfo":
        """Fill the card from a run config dict (``RunConfig.to_dict()``) and normalization statistics."""
        model = dict(config.get("model", {}))
        mask = dict(config.get("mask", {}))
        data = dict(config.get("data", {}))
        engine = dict(config.get("engine", {}))
        options = dict(data.get("options", {}))
        stats = dict(stats or {})
        channels = list(stats.get("channel_names") or [])
        if not channels:
            for key in CHANNEL_OPTION_KEYS:
                if options.get(key):
                    value = options[key]
                    channels = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
                    break
        spacing = next((f"{key} = {options[key]}" for key in SPACING_OPTION_KEYS if options.get(key) is not None), "")
        pretraining = {
            "sources": data.get("sources", []),
            "samples used for statistics": stats.get("count"),
            "batch size": engine.get("batch_size"),
            "steps": engine.get("max_steps") or step,
            "epochs": engine.get("epochs"),
            "seed": engine.get("seed"),
            "base lr": dict(config.get("optim", {})).get("base_lr"),
            **dict(extra_data or {}),
        }
        return cls(
            name=name, adapter=adapter or str(config.get("adapter", "")), preset=str(model.get("preset", "")),
            patch_size=model.get("patch_size"), img_size=model.get("img_size"), in_chans=model.get("in_chans"),
            mask_ratio=mask.get("ratio"), mask_strategy=str(mask.get("strategy", "")),
            norm_pix_loss=model.get("norm_pix_loss"), channels=channels,
            normalization_mean=[float(v) for v in stats.get("mean", [])],
            normalization_std=[float(v) for v in stats.get("std", [])],
            spacing=spacing, pretraining_data={k: v for k, v in pretraining.items() if v not in (None, [], "")},
            step=step, weights_file=weights_file,
        )


    @classmethod
    def from_export(cls, info: Mapping[str, Any], name: str | None = None, weights_file: str = "encoder.safetensors") -> "ModelCardInfo":
        """Fill the card from the flat export info (``config.json`` written by ``mae_domains.export``)."""
        stats = dict(info.get("normalization") or {})
        options = dict(info.get("adapter_options") or {})
        config = {
            "adapter": info.get("adapter", ""),
            "model": {k: info.get(k) for k in ("preset", "patch_size", "img_size", "in_chans", "norm_pix_loss")},
            "mask": {"ratio": info.get("mask_ratio")},
            "data": {"sources": list(info.get("data_sources") or []), "options": options},
        }
        extra = {"timm model": info.get("timm_model"), "embedding width": info.get("embed_dim"), "depth": info.get("depth")}
        card = cls.from_run(name or str(info.get("name") or info.get("adapter") or "encoder"), config, stats,
                            step=info.get("pretrain_steps"), weights_file=weights_file,
                            extra_data={k: v for k, v in extra.items() if v is not None})
        card.version = str(info.get("mae_domains_version", card.version))
        return card


def _value(value: Any) -> str:
    if value is None or value == "":
        return "not recorded"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "not recorded"
    return str(value)


def _channel_table(info: ModelCardInfo) -> list[str]:
    count = max(len(info.channels), len(info.normalization_mean), len(info.normalization_std), info.in_chans or 0)
    if count == 0:
        return ["No channel information recorded."]
    lines = ["| # | channel | mean | std |", "|---|---|---|---|"]
    for i in range(count):
        name = info.channels[i] if i < len(info.channels) else f"channel {i}"
        mean = f"{info.normalization_mean[i]:.6g}" if i < len(info.normalization_mean) else ""
        std = f"{info.normalization_std[i]:.6g}" if i < len(info.normalization_std) else ""
        lines.append(f"| {i} | {name} | {mean} | {std} |")
    return lines


def render_model_card(info: ModelCardInfo, records: Iterable[ResultRecord] = ()) -> str:
    """The card as Markdown; ``records`` of other checkpoints are left out when some match ``info.name``."""
    records = list(records)
    own = [r for r in records if r.checkpoint == info.name]
    records = own or records
    lines = [
        f"# Model card: {info.name}", "",
        "## Model", "",
        f"- Adapter: {_value(info.adapter)}",
        f"- Encoder preset: {_value(info.preset)}",
        f"- Patch size: {_value(info.patch_size)}",
        f"- Input size: {_value(info.img_size)}",
        f"- Input channels: {_value(info.in_chans)}",
        f"- Mask ratio: {_value(info.mask_ratio)}" + (f" ({info.mask_strategy} masking)" if info.mask_strategy else ""),
        f"- Normalized-pixel target: {_value(info.norm_pix_loss)}",
        f"- Pretraining step: {_value(info.step)}",
        f"- Weights: {_value(info.weights_file)}",
        f"- mae-domains version: {info.version}",
        "",
        "## Input contract", "",
        "Inputs are standardized per channel, `(x - mean) / std`, with the statistics below (computed on the "
        "pretraining archive), in this channel order.", "",
        *_channel_table(info), "",
        f"- Spacing / ground sample distance: {_value(info.spacing)}",
        "",
        "## Pretraining data", "",
    ]
    lines += [f"- {key}: {_value(value)}" for key, value in info.pretraining_data.items()] or ["- not recorded"]
    lines += ["", "## Results", ""]
    if records:
        table = render_markdown(records, aggregate_seeds=True, per_class=False)
        lines += table.rstrip("\n").splitlines()
    else:
        lines.append("No evaluation results recorded yet.")
    if info.notes:
        lines += ["", "## Notes", "", info.notes]
    return "\n".join(lines) + "\n"


MODEL_CARD_NAME = "MODEL_CARD.md"


def write_model_card(path: str | os.PathLike, info: ModelCardInfo | Mapping[str, Any],
                     records: Iterable[ResultRecord] = ()) -> Path:
    """Write the card (UTF-8 Markdown) and return its path. ``path`` may be a folder (an export folder:
    the card goes to ``MODEL_CARD.md`` in it); ``info`` may be the flat export info dict."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / MODEL_CARD_NAME
    if not isinstance(info, ModelCardInfo):
        info = ModelCardInfo.from_export(info, name=path.parent.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(info, records), encoding="utf-8")
    return path


def model_card_from_checkpoint(path: str | os.PathLike, name: str | None = None) -> ModelCardInfo:
    """Card information from a run's ``checkpoint.pt`` (config, statistics, adapter and step inside)."""
    from mae_domains.weights import safe_torch_load

    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    state = safe_torch_load(path)
    if not isinstance(state, Mapping) or "config" not in state:
        raise ValueError(f"{path}: not a mae-domains run checkpoint (no 'config' entry)")
    return ModelCardInfo.from_run(
        name or path.parent.name, state["config"], state.get("stats"), state.get("adapter"),
        int(state["step"]) if "step" in state else None, weights_file=str(path),
    )
