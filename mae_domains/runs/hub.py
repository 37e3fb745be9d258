"""Hugging Face Hub model repositories: the ``hf`` export layout and loading an export by Hub id.

An ``hf`` export folder is a model repository the Hub accepts as is: ``model.safetensors`` (the encoder),
``config.json`` and ``README.md`` (the model card, with YAML front matter: ``library_name``, ``tags``,
``license``, ``pipeline_tag: image-feature-extraction``). ``config.json`` is our export config (input
contract, loader, run config) plus, for plain 2D encoders saved under timm keys, what timm's Hub loader
reads: ``architecture`` (a registered timm ViT), ``model_args``, ``num_classes: 0``, ``num_features``
and ``pretrained_cfg`` (mean, std, input size), so ``timm.create_model("hf-hub:<id>", pretrained=True)``
or ``"local-dir:<folder>"`` rebuilds the encoder with the right normalization. Other encoders
(band groups, time series, channel-agnostic, 3D) name ``mae_domains.GridEncoder`` as their architecture
and load with :func:`mae_domains.runs.load_model`, which also takes ``hf-hub:<owner>/<name>[@revision]``
(downloaded with ``huggingface_hub``, imported only then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mae_domains.config import ConfigError
from mae_domains.runs.encoder_weights import TIMM_FORMAT
from mae_domains.runs.layout import HF_LAYOUT

HUB_PREFIX = "hf-hub:"
NATIVE_ARCHITECTURE = "mae_domains.GridEncoder"
LICENSE_PLACEHOLDER = "other"
HUB_FILES = ["*.json", "*.safetensors", "*.md"]  # what load_model reads from a repository (no pickles)
# timm's per-model fields; ViTs are trained and evaluated on whole (resized) images here, no center crop.
TIMM_DATA_DEFAULTS = {"interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center", "fixed_input_size": True,
                      "first_conv": "patch_embed.proj", "classifier": "head", "pool_size": None}
ADAPTER_TAGS = {"remote_sensing": ["remote-sensing", "earth-observation"], "medical": ["medical-imaging"],
                "microscopy": ["microscopy", "cell-painting"], "image": []}


class HubUnavailableError(ConfigError):
    """``huggingface_hub`` is needed (a Hub id was given) but not installed (one line, exit code 2)."""


def is_hub_id(source: str | Path) -> bool:
    """``hf-hub:<owner>/<name>`` (timm's spelling), optionally ``@<revision>``."""
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def download_hub_model(source: str, cache_dir: str | Path | None = None) -> Path:
    """The local folder of the Hub model repository ``hf-hub:<owner>/<name>[@revision]``."""
    repo = source[len(HUB_PREFIX):] if is_hub_id(source) else source
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{source}: a Hub model id is 'hf-hub:<owner>/<name>' (optionally '@<revision>')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise HubUnavailableError(f"loading {source} needs the huggingface_hub package: "
                                  "pip install huggingface_hub (or download the repository and give its folder)") from None
    folder = snapshot_download(repo_id=repo_id, revision=revision or None, cache_dir=cache_dir,
                               allow_patterns=HUB_FILES)
    return Path(folder)


def timm_pretrained_cfg(info: Mapping[str, Any]) -> dict[str, Any] | None:
    """timm's ``pretrained_cfg`` of a 2D export (None for encoders timm cannot build): the run's
    per-channel mean and std on values as the adapter reads them (the image adapter reads [0, 1], as
    timm's ``ToTensor``), the input size and no classifier."""
    contract = info.get("input") or {}
    stats = info.get("normalization") or {}
    if info.get("format") != TIMM_FORMAT or not stats or not contract.get("in_chans"):
        return None
    size = int(contract["img_size"])
    return {"tag": "mae_domains", "custom_load": False, "input_size": [int(contract["in_chans"]), size, size],
            "mean": [float(v) for v in stats["mean"]], "std": [max(float(v), 1e-6) for v in stats["std"]],
            "num_classes": 0, **TIMM_DATA_DEFAULTS}


def timm_hub_fields(info: Mapping[str, Any]) -> dict[str, Any]:
    """The fields timm's ``hf-hub:`` / ``local-dir:`` loader reads from ``config.json``."""
    vit = info.get("timm_vision_transformer")
    pretrained = info.get("pretrained_cfg")
    if info.get("format") != TIMM_FORMAT or not vit or not pretrained:
        return {"architecture": NATIVE_ARCHITECTURE}
    named = info.get("timm_model") or {}
    # Any registered ViT works as the builder: model_args give every size (micro included).
    base = named.get("model_name") or "vit_tiny_patch16_224"
    model_args = {k: v for k, v in vit.items() if k != "num_classes"}
    return {"architecture": base, "model_args": model_args, "num_classes": 0,
            "num_features": int(vit["embed_dim"]), "global_pool": "token", "pretrained_cfg": dict(pretrained)}


def hub_config(info: Mapping[str, Any], layout: str = HF_LAYOUT) -> dict[str, Any]:
    """``config.json`` of an export in ``layout`` (``hf`` or ``mae-domains``): the export config with timm's
    Hub fields, which its ``local-dir:`` loader reads too; our one-line architecture description moves to
    ``architecture_description``."""
    config = dict(info)
    config["architecture_description"] = config.pop("architecture", "")
    config["layout"] = layout
    config.update(timm_hub_fields(info))
    return config


def hub_tags(info: Mapping[str, Any]) -> list[str]:
    adapter = str(info.get("adapter") or "")
    family = adapter.split(".")[0]
    tags = ["mae-domains", "masked-autoencoder", "self-supervised", "image-feature-extraction"]
    tags += ADAPTER_TAGS.get(family, [family] if family else [])
    if adapter:
        tags.append(adapter.replace(".", "-").replace("_", "-"))
    if info.get("format") == TIMM_FORMAT:
        tags.append("timm")
    return list(dict.fromkeys(tags))


def front_matter(info: Mapping[str, Any], license: str | None = None) -> str:
    """The model card's YAML front matter (the Hub reads it): library, tags, license, pipeline."""
    library = "timm" if info.get("pretrained_cfg") and info.get("format") == TIMM_FORMAT else "mae-domains"
    lines = ["---", f"library_name: {library}", "tags:", *[f"- {tag}" for tag in hub_tags(info)]]
    if license:
        lines.append(f"license: {license}")
    else:
        lines += [f"license: {LICENSE_PLACEHOLDER}  # set the license of these weights (an SPDX id such as "
                  "apache-2.0 or cc-by-4.0, or keep 'other' and add license_name / license_link)"]
    lines += ["pipeline_tag: image-feature-extraction", "---", ""]
    return "\n".join(lines)
