"""Markdown model cards for exported encoders: architecture, input contract, loading, pretraining data,
results.

The input contract is what a user must reproduce to get the published numbers: the array layout, the
channel count and channels/bands in order with their normalization statistics, band groups, frames and
dates, patch size and input size, physical spacing or GSD, and every adapter option (defaults included).
The loading section says how to rebuild the encoder: timm for 2D encoders, ``mae_domains.runs.load_model``
for every export. The results section is a Markdown table handed in by the caller (the evaluation package renders
one from its result records: :func:`mae_domains.evaluation.results_card.render_model_card`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import mae_domains
from mae_domains.runs.layout import CHECKPOINT_NAME, HF_CARD_NAME, HF_LAYOUT, HF_WEIGHTS_NAME, MODEL_CARD_NAME
from mae_domains.weights import safe_torch_load

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
    value_range: str = ""  # the values the adapter's reading produces: the encoder's input before normalization
    method_papers: list[str] = field(default_factory=list)  # the adapter's method papers, one citation each
    layout: str = ""
    band_groups: dict[str, list[str]] = field(default_factory=dict)
    time: dict[str, Any] = field(default_factory=dict)
    spacing_settings: dict[str, Any] = field(default_factory=dict)
    adapter_options: dict[str, Any] = field(default_factory=dict)
    architecture: str = ""
    weights_format: str = ""
    timm_model: dict[str, Any] | None = None
    timm_vision_transformer: dict[str, Any] | None = None
    loader: str = ""
    wavelengths_nm: list[float | None] = field(default_factory=list)
    gsd: dict[str, Any] = field(default_factory=dict)  # gsd_m and gsd_note of the input contract
    pretrained_cfg: dict[str, Any] | None = None
    hub_layout: bool = False

    @classmethod
    def from_run(cls, name: str, config: Mapping[str, Any], stats: Mapping[str, Any] | None = None,
                 adapter: str | None = None, step: int | None = None, weights_file: str = "",
                 extra_data: Mapping[str, Any] | None = None) -> "ModelCardInfo":
        """Fill the card from a run config dict (``RunConfig.to_dict()``) and normalization statistics."""
        model = dict(config.get("model") or {})
        mask = dict(config.get("mask") or {})
        data = dict(config.get("data") or {})
        engine = dict(config.get("engine") or {})
        options = dict(data.get("options") or {})
        stats = dict(stats or {})
        channels = list(stats.get("channel_names") or [])
        if not channels:
            for key in CHANNEL_OPTION_KEYS:
                if options.get(key):
                    value = options[key]
                    channels = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
                    break
        spacing = next((f"{key} = {options[key]}" for key in SPACING_OPTION_KEYS if options.get(key) is not None), "")
        sources = [str(s) for s in data.get("sources") or []]
        pretraining = {
            # folder and file names only: a card is published, the paths on the training machine are not
            "sources": f"{len(sources)} location(s): " + ", ".join(Path(s).name or s for s in sources)
            if sources else None,
            "samples used for statistics": stats.get("count"),
            "batch size": engine.get("batch_size"),
            "steps": engine.get("max_steps") or step,
            "epochs": engine.get("epochs"),
            "seed": engine.get("seed"),
            "base lr": dict(config.get("optim") or {}).get("base_lr"),
            **dict(extra_data or {}),
        }
        return cls(
            name=name, adapter=adapter or str(config.get("adapter", "")), preset=str(model.get("preset", "")),
            patch_size=model.get("patch_size"), img_size=model.get("img_size"), in_chans=model.get("in_chans"),
            mask_ratio=mask.get("ratio"), mask_strategy=str(mask.get("strategy") or ""),
            norm_pix_loss=model.get("norm_pix_loss"), channels=channels,
            normalization_mean=[float(v) for v in stats.get("mean", [])],
            normalization_std=[float(v) for v in stats.get("std", [])],
            spacing=spacing, pretraining_data={k: v for k, v in pretraining.items() if v not in (None, [], "")},
            step=step, weights_file=weights_file, adapter_options=options,
        )

    @classmethod
    def from_export(cls, info: Mapping[str, Any], name: str | None = None,
                    weights_file: str = "encoder.safetensors") -> "ModelCardInfo":
        """Fill the card from the export's ``config.json``: its input contract (``input``) and loader when
        present, the run config in ``run_config``, else the flat fields ``preset``, ``patch_size``, ... of
        older exports."""
        stats = dict(info.get("normalization") or {})
        contract = dict(info.get("input") or {})
        config = info.get("run_config") or {
            "adapter": info.get("adapter", ""),
            "model": {k: info.get(k) for k in ("preset", "patch_size", "img_size", "in_chans", "norm_pix_loss")},
            "mask": {"ratio": info.get("mask_ratio")},
            "data": {"sources": list(info.get("data_sources") or []), "options": dict(info.get("adapter_options") or {})},
        }
        extra = {"embedding width": info.get("embed_dim"), "depth": info.get("depth")}
        card = cls.from_run(str(info.get("name") or name or info.get("adapter") or "encoder"), config, stats,
                            adapter=info.get("adapter"), step=info.get("pretrain_steps"), weights_file=weights_file,
                            extra_data={k: v for k, v in extra.items() if v is not None})
        card.version = str(info.get("mae_domains_version", card.version))
        if "in_chans" in info:
            card.in_chans = info["in_chans"]
        if contract.get("channels"):
            card.channels = list(contract["channels"])
        card.layout = str(contract.get("layout") or "")
        card.band_groups = dict(contract.get("band_groups") or {})
        card.time = {k: contract[k] for k in ("frames", "frames_note", "dates") if k in contract}
        if "spacing" in contract:
            card.spacing_settings = dict(contract["spacing"] or {})
            card.spacing = "; ".join(f"{k} = {_spacing_value(v)}" for k, v in card.spacing_settings.items())
        card.adapter_options = dict(contract.get("adapter_options") or info.get("adapter_options") or card.adapter_options)
        card.architecture = str(info.get("architecture_description") or info.get("architecture") or "")
        if info.get("layout", HF_LAYOUT if "architecture_description" in info else "") == HF_LAYOUT:  # hf config.json
            card.hub_layout = True
            if weights_file == "encoder.safetensors":
                card.weights_file = HF_WEIGHTS_NAME
        card.weights_format = str(info.get("format") or "")
        card.timm_model = info.get("timm_model") if isinstance(info.get("timm_model"), Mapping) else None
        card.timm_vision_transformer = info.get("timm_vision_transformer")
        card.loader = str((info.get("loader") or {}).get("function") or "")
        card.wavelengths_nm = list(contract.get("wavelengths_nm") or [])
        card.gsd = {k: contract[k] for k in ("gsd_m", "gsd_note") if contract.get(k) is not None}
        card.pretrained_cfg = info.get("pretrained_cfg") if isinstance(info.get("pretrained_cfg"), Mapping) else None
        card.value_range = str(contract.get("value_range") or "")
        card.method_papers = [str(p) for p in info.get("method_papers") or []]
        return card


def _spacing_value(value: Any) -> str:
    return "not set (the adapter's default: from the files' own metadata)" if value is None else _value(value)


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
    waves = any(w is not None for w in info.wavelengths_nm)
    lines = ["| # | channel | centre wavelength (nm) | mean | std |", "|---|---|---|---|---|"] if waves else \
        ["| # | channel | mean | std |", "|---|---|---|---|"]
    for i in range(count):
        name = info.channels[i] if i < len(info.channels) else f"channel {i}"
        mean = f"{info.normalization_mean[i]:.6g}" if i < len(info.normalization_mean) else ""
        std = f"{info.normalization_std[i]:.6g}" if i < len(info.normalization_std) else ""
        if waves:
            wave = info.wavelengths_nm[i] if i < len(info.wavelengths_nm) else None
            lines.append(f"| {i} | {name} | {'' if wave is None else f'{wave:g}'} | {mean} | {std} |")
        else:
            lines.append(f"| {i} | {name} | {mean} | {std} |")
    return lines


def _input_lines(info: ModelCardInfo) -> list[str]:
    lines = []
    if info.layout:
        lines.append(f"- Array layout of one sample: {info.layout}")
    if info.value_range:
        lines.append(f"- Values before normalization: {info.value_range}")
    channels = "any number of named channels" if info.in_chans is None and info.layout else _value(info.in_chans)
    lines += [f"- Input channels: {channels}", f"- Patch size: {_value(info.patch_size)}",
              f"- Input size: {_value(info.img_size)}", ""]
    lines += ["Inputs are standardized per channel, `(x - mean) / std`, with the statistics below (computed on the "
              "pretraining archive), in this channel order.", "", *_channel_table(info), ""]
    if info.band_groups:
        lines.append("- Band groups (one patch projection each, in this order): "
                     + "; ".join(f"{name}: {', '.join(bands)}" for name, bands in info.band_groups.items()))
    for key, text in (("frames", "Frames per sample"), ("frames_note", "Frames"), ("dates", "Dates")):
        if key in info.time:
            lines.append(f"- {text}: {_value(info.time[key]) if info.time[key] is not None else 'any number'}")
    lines.append(f"- Spacing / ground sample distance: {_value(info.spacing)}")
    if info.gsd:
        gsd = info.gsd.get("gsd_m")
        lines.append(f"- Ground sample distance of the pretraining input: "
                     f"{'from each file' if gsd is None else f'{_value(gsd)} m'}"
                     + (f" ({info.gsd['gsd_note']})" if info.gsd.get("gsd_note") else ""))
    if info.adapter_options:
        lines += ["", "Adapter options (defaults included):", ""]
        lines += [f"- `{key}`: `{json.dumps(value, default=str)}`" for key, value in sorted(info.adapter_options.items())]
    return lines


def _loading_lines(info: ModelCardInfo) -> list[str]:
    lines = []
    if info.architecture:
        lines += [f"Weights: {info.architecture}.", ""]
    if info.hub_layout and info.pretrained_cfg:
        lines += ["With timm (mean, std and input size come from `pretrained_cfg` in config.json):", "", "```python",
                  "import timm", "",
                  "model = timm.create_model(\"hf-hub:<owner>/<name>\", pretrained=True)  # or \"local-dir:<this folder>\"",
                  "config = timm.data.resolve_data_config(model=model)  # "
                  f"mean={_short(info.pretrained_cfg.get('mean'))}, std={_short(info.pretrained_cfg.get('std'))}",
                  "transform = timm.data.create_transform(**config)", "```", "",
                  f"The mean and std apply to values as the `{info.adapter}` adapter reads them (the image adapters "
                  "scale 8/16-bit pixels to [0, 1], as timm's ToTensor does).", ""]
    elif info.pretrained_cfg:
        weights = info.weights_file or "encoder.safetensors"
        lines += ["With timm (mean, std and input size come from `pretrained_cfg` in config.json), from this folder:",
                  "", "```python", "import timm", "",
                  "model = timm.create_model(\"local-dir:.\", pretrained=True)  # or \"local-dir:<this folder>\""]
        if info.timm_model:
            lines += ["# or, with the keywords in config.json:", "import json",
                      "kwargs = json.load(open(\"config.json\"))[\"timm_model\"]  # "
                      + _kwargs({k: v for k, v in info.timm_model.items() if k != "pretrained_cfg"}),
                      f"model = timm.create_model(**kwargs, pretrained=True, pretrained_cfg_overlay=dict(file=\"{weights}\"))"]
        lines += ["config = timm.data.resolve_data_config(model=model)  # "
                  f"mean={_short(info.pretrained_cfg.get('mean'))}, std={_short(info.pretrained_cfg.get('std'))}",
                  "transform = timm.data.create_transform(**config)", "```", "",
                  f"The mean and std apply to values as the `{info.adapter}` adapter reads them (the image adapters "
                  "scale 8/16-bit pixels to [0, 1], as timm's ToTensor does).", ""]
    elif info.timm_vision_transformer:
        lines += ["With timm (no registered model of this size):", "", "```python",
                  f"model = timm.models.VisionTransformer(**config[\"timm_vision_transformer\"])  "
                  f"# {_kwargs(info.timm_vision_transformer)}",
                  "model.load_state_dict(load_file(\"encoder.safetensors\"))", "```", ""]
    loader = info.loader or "mae_domains.runs.load_model"
    shape, axes = _example_input(info)
    lines += [f"With mae-domains ({info.version} or later, adapter `{info.adapter}` installed), for this and every "
              "export, from this folder:", "", "```python", "import torch", "", "import mae_domains", "",
              "model = mae_domains.load_model(\".\")  # or \"<this folder>\""
              + (", or \"hf-hub:<owner>/<name>\"" if info.hub_layout else ""),
              f"images = torch.rand({', '.join(map(str, shape))})  # stand-in: 2 samples {axes}, values as the "
              "adapter reads its files",
              "features = mae_domains.embed(model, images)  # (2, width); or embed(model, [\"file\", ...]) for files",
              "```", "", "`mae_domains.embed` normalizes with the statistics above; `docs/notebook.md` in mae-domains "
              "shows each field's files and metadata (`meta=`: channel names, GSD, dates)."]
    if loader != "mae_domains.runs.load_model":
        lines.append(f"(loader: `{loader}`)")
    return lines


def _example_input(info: ModelCardInfo) -> tuple[tuple[int, ...], str]:
    """A batch of two inputs of the pretraining size in the encoder's layout, and the axes it stands for."""
    channels, size = int(info.in_chans or 1), int(info.img_size or 224)
    if info.layout.startswith("(T, C, H, W)"):
        return (2, int(info.time.get("frames") or 2), channels, size, size), "(T, C, H, W)"
    if info.layout.startswith("(C, D, H, W)"):
        return (2, channels, size, size, size), "(C, D, H, W)"
    return (2, channels, size, size), "(C, H, W)"


def _short(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values or []) + "]"


def _kwargs(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


MAE_CITATION = ('He, Chen, Xie, Li, Dollár, Girshick: "Masked Autoencoders Are Scalable Vision Learners", '
                 "CVPR 2022 (arXiv:2111.06377)")


def _use_lines(info: ModelCardInfo) -> list[str]:
    samples = info.pretraining_data.get("samples used for statistics")
    medical = info.adapter.startswith("medical")
    return [
        "## Intended use", "",
        "Features (embeddings) of images like the pretraining data, for linear probes, kNN, fine-tuning and "
        "retrieval in research. The encoder was pretrained without labels by masked image modelling; it has "
        "no classifier.", "",
        "## Limitations", "",
        f"- Learned from the pretraining archive only ({_value(samples)} samples in the statistics): other "
        "sensors, scanners, stains, value ranges or resolutions than listed under Input contract may embed poorly.",
        "- A low reconstruction loss does not show that the features suit a task; evaluate on labelled data "
        "(`mae-domains evaluate`).",
        *(["- Not a medical device: not validated for diagnosis or any clinical decision."] if medical else []),
        "",
    ]


def _citation_lines(info: ModelCardInfo) -> list[str]:
    lines = ["## How to cite", "", "The methods this encoder was trained with:", "", f"- {MAE_CITATION}"]
    lines += [f"- {paper}" for paper in info.method_papers]
    return lines + ["- mae-domains " + info.version + " (the software that trained and exported it)"]


def render_model_card(info: ModelCardInfo, results_markdown: str = "") -> str:
    """The card as Markdown; ``results_markdown`` (a table) fills the results section."""
    lines = [
        f"# {info.name}", "",
        f"A masked-autoencoder encoder for `{info.adapter}` inputs, trained with mae-domains." if info.adapter else
        "A masked-autoencoder encoder trained with mae-domains.", "",
        "## Model", "",
        f"- Adapter: {_value(info.adapter)}",
        f"- Encoder preset: {_value(info.preset)}",
        f"- Mask ratio: {_value(info.mask_ratio)}" + (f" ({info.mask_strategy} masking)" if info.mask_strategy else ""),
        f"- Normalized-pixel target: {_value(info.norm_pix_loss)}",
        f"- Pretraining step: {_value(info.step)}",
        f"- Weights: {_value(info.weights_file)}" + (f" ({info.weights_format})" if info.weights_format else ""),
        f"- mae-domains version: {info.version}",
        "",
        *_use_lines(info),
        "## Input contract", "",
        *_input_lines(info),
        "",
        "## Loading", "",
        *_loading_lines(info),
        "",
        "## Pretraining data", "",
    ]
    lines += [f"- {key}: {_value(value)}" for key, value in info.pretraining_data.items()] or ["- not recorded"]
    lines += ["", "## Results", ""]
    lines += results_markdown.rstrip("\n").splitlines() if results_markdown.strip() else ["No evaluation results recorded yet."]
    lines += ["", *_citation_lines(info)]
    if info.notes:
        lines += ["", "## Notes", "", info.notes]
    return "\n".join(lines) + "\n"


def write_model_card(path: str | os.PathLike, info: ModelCardInfo | Mapping[str, Any], results_markdown: str = "",
                     front_matter: str = "", weights_file: str | None = None) -> Path:
    """Write the card (UTF-8 Markdown) and return its path. ``path`` may be a folder (an export folder:
    the card goes to ``MODEL_CARD.md`` in it); ``info`` may be the export's ``config.json`` dict.
    ``front_matter`` (YAML between ``---`` lines, for the Hub) goes first and makes the card describe the
    ``hf`` layout; ``weights_file`` names the weights."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        hub = (path / HF_WEIGHTS_NAME).is_file() and (path / HF_CARD_NAME).is_file()
        path = path / (HF_CARD_NAME if hub else MODEL_CARD_NAME)
    if not front_matter and path.name == HF_CARD_NAME and path.is_file():
        front_matter = existing_front_matter(path)  # a rewritten Hub card keeps its metadata (license, tags)
    if not isinstance(info, ModelCardInfo):
        info = ModelCardInfo.from_export(info, name=path.parent.name, **({"weights_file": weights_file} if weights_file else {}))
    if front_matter:
        info.hub_layout = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(front_matter + render_model_card(info, results_markdown), encoding="utf-8")
    return path


def existing_front_matter(path: Path) -> str:
    """The YAML front matter (``---`` ... ``---``) at the top of a card, or ""."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return ""
    end = text.find("\n---\n", 4)
    return text[: end + 5] if end >= 0 else ""


def model_card_from_checkpoint(path: str | os.PathLike, name: str | None = None) -> ModelCardInfo:
    """Card information from a run's ``checkpoint.pt`` (config, statistics, adapter and step inside)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    state = safe_torch_load(path)
    if not isinstance(state, Mapping) or "config" not in state:
        raise ValueError(f"{path}: not a mae-domains run checkpoint (no 'config' entry)")
    return ModelCardInfo.from_run(
        name or path.parent.name, state["config"], state.get("stats"), state.get("adapter"),
        int(state["step"]) if "step" in state else None, weights_file=path.name,
    )
