"""Export a run's encoder: ``encoder.safetensors``, ``config.json``, ``stats.json`` and ``MODEL_CARD.md``;
or, in the ``hf`` layout, a Hugging Face Hub model repository (``model.safetensors``, ``config.json`` with
timm's Hub fields, ``stats.json``, ``README.md`` with YAML front matter; :mod:`mae_domains.runs.hub`).

2D encoders are written under timm ``VisionTransformer`` keys and ``config.json`` says how timm rebuilds
them, in both layouts: ``architecture`` (a registered timm ViT), ``model_args`` and ``pretrained_cfg`` (the
run's mean, std and input size) for ``timm.create_model("local-dir:<folder>", pretrained=True)``, and
``timm_model`` for ``timm.create_model(**timm_model, pretrained=True, pretrained_cfg_overlay=dict(file=...))``. Other encoders (band groups, time series,
channel-agnostic, 3D) keep their own keys under their own format name and make no timm claim;
:func:`mae_domains.runs.load_model` rebuilds any export. ``config.json`` and the card state the real input
(:mod:`mae_domains.runs.input_contract`). Files get ordinary permissions (``0666`` less the umask).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from mae_domains import __version__
from mae_domains.runs.encoder_weights import TIMM_FORMAT, export_encoder_state
from mae_domains.runs.hub import HF_LAYOUT, front_matter, hub_config, timm_pretrained_cfg
from mae_domains.runs.input_contract import input_contract
from mae_domains.runs.layout import ENCODER_NAME, EXPORT_CONFIG_NAME, HF_CARD_NAME, HF_WEIGHTS_NAME, STATS_NAME
from mae_domains.runs.model import LoadedModel, grid_hw, load_model
from mae_domains.runs.model_card import write_model_card
from mae_domains.runs.timm_model import timm_create_kwargs, timm_vit_kwargs
from mae_domains.weights import save_safetensors

LOADER = "mae_domains.runs.load_model"
NATIVE_LAYOUT = "mae-domains"
LAYOUTS = (NATIVE_LAYOUT, HF_LAYOUT)


def architecture(loaded: LoadedModel, weights_format: str) -> str:
    """One line saying what the weights are."""
    embedding = type(getattr(loaded.model.encoder, "embedding", loaded.model.encoder)).__name__
    if weights_format == TIMM_FORMAT:
        return ("timm VisionTransformer: CLS token, fixed 2D sin-cos pos_embed, no classifier head "
                f"(trained as a mae_domains GridEncoder with {embedding})")
    return (f"mae_domains GridEncoder with {embedding} (its own keys, not a timm model); rebuild it with "
            f"{LOADER}(<export folder>), which needs mae-domains and the '{loaded.config.adapter}' adapter")


def run_name(source: str | Path) -> str:
    """The name of the run (or export) behind a weights file: its folder's name."""
    source = Path(source)
    return (source.parent if source.suffix else source).name


def export_info(loaded: LoadedModel, weights_format: str) -> dict[str, Any]:
    """The export's ``config.json``: flat fields for people and timm users, the input contract (``input``),
    the loader, and the run config (``run_config``) that rebuilds the model."""
    cfg, encoder = loaded.config, loaded.model.encoder
    stats = loaded.stats.as_dict() if loaded.stats is not None else None
    contract = input_contract(loaded.adapter, loaded.model, cfg, loaded.stats)
    in_chans = contract["in_chans"]
    depth = len(getattr(encoder, "blocks", []))
    timm_vit = None
    if weights_format == TIMM_FORMAT:
        timm_vit = timm_vit_kwargs(cfg.model.preset, cfg.model.patch_size, cfg.model.img_size, in_chans, depth=depth)
    run_config = copy.deepcopy(cfg.to_dict())
    if in_chans is not None:
        run_config["model"]["in_chans"] = int(in_chans)
    info = {
        "name": run_name(loaded.source), "adapter": cfg.adapter, "preset": cfg.model.preset,
        "patch_size": cfg.model.patch_size,
        "img_size": cfg.model.img_size, "in_chans": in_chans, "embed_dim": getattr(encoder, "embed_dim", None),
        "depth": depth,
        "mask_ratio": cfg.mask.ratio if cfg.mask.ratio is not None else getattr(loaded.model, "mask_ratio", None),
        "norm_pix_loss": cfg.model.norm_pix_loss, "pretrain_steps": loaded.step, "mae_domains_version": __version__,
        "format": weights_format, "architecture": architecture(loaded, weights_format),
        "timm_model": None, "timm_vision_transformer": timm_vit,
        "loader": {"function": LOADER, "requires": {"mae_domains": __version__, "adapter": cfg.adapter}},
        "input": contract, "normalization": stats, "data_sources": cfg.data.sources,
        "adapter_options": contract["adapter_options"], "run_config": run_config,
        "method_papers": list(getattr(loaded.adapter, "method_papers", ()) or ()),
    }
    info["pretrained_cfg"] = timm_pretrained_cfg(info)
    if weights_format == TIMM_FORMAT:
        info["timm_model"] = timm_create_kwargs(cfg.model.preset, cfg.model.patch_size, cfg.model.img_size, in_chans,
                                                depth=depth, pretrained_cfg=info["pretrained_cfg"])
    return info


def ordinary_permissions(path: Path) -> Path:
    """Give ``path`` the mode a plain ``open()`` would (``0666`` less the umask); temp-file writers
    leave ``0600``, which other users of a shared export cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def export_run(source: str | Path, out_dir: str | Path, layout: str = NATIVE_LAYOUT,
               license: str | None = None) -> dict[str, Path]:
    """Write the encoder of ``source`` (a run folder, a ``checkpoint.pt``, another export or a Hub id) to
    ``out_dir`` in ``layout`` (``mae-domains``, or ``hf``: a Hub model repository whose card declares
    ``license``, a placeholder when None); returns the written paths by kind (``encoder``, ``config``,
    ``stats``, ``model_card``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"export layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    loaded = load_model(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state, weights_format = export_encoder_state(loaded.model, grid_hw(loaded.config))
    info = export_info(loaded, weights_format)
    hub = layout == HF_LAYOUT
    config = hub_config(info, layout)  # timm's fields in both layouts: timm.create_model("local-dir:<out>") works
    weights = out / (HF_WEIGHTS_NAME if hub else ENCODER_NAME)
    paths = {"encoder": save_safetensors(state, weights, metadata={"format": weights_format, "config": info})}
    paths["config"] = out / EXPORT_CONFIG_NAME
    paths["config"].write_text(json.dumps(config, indent=2, default=str))
    if info["normalization"] is not None:
        paths["stats"] = out / STATS_NAME
        paths["stats"].write_text(json.dumps(info["normalization"], indent=2))
    if hub:
        paths["model_card"] = write_model_card(out / HF_CARD_NAME, info, front_matter=front_matter(info, license),
                                               weights_file=HF_WEIGHTS_NAME)
    else:
        paths["model_card"] = write_model_card(out, info)
    for path in paths.values():
        ordinary_permissions(path)
    return paths
