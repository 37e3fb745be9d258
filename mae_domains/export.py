"""Export a run's encoder: safetensors with timm ``VisionTransformer`` keys, a JSON config, the
normalization statistics and a model card."""

from __future__ import annotations

import json
from pathlib import Path

from mae_domains import __version__
from mae_domains.runs import load_run
from mae_domains.weights import save_safetensors


def export_run(run_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    run = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder = run.model.encoder
    cfg = run.config
    info = {
        "adapter": cfg.adapter, "preset": cfg.model.preset, "patch_size": cfg.model.patch_size,
        "img_size": cfg.model.img_size, "in_chans": cfg.model.in_chans, "embed_dim": getattr(encoder, "embed_dim", None),
        "depth": len(getattr(encoder, "blocks", [])), "mask_ratio": cfg.mask.ratio,
        "norm_pix_loss": cfg.model.norm_pix_loss, "pretrain_steps": run.step, "mae_domains_version": __version__,
        "normalization": run.stats.as_dict(), "data_sources": cfg.data.sources, "adapter_options": cfg.data.options,
        "timm_model": _timm_name(cfg.model.preset, cfg.model.patch_size),
    }
    paths = {
        "encoder": save_safetensors(encoder.state_dict(), out / "encoder.safetensors",
                                    metadata={"format": "timm.VisionTransformer", "config": info}),
    }
    (out / "config.json").write_text(json.dumps(info, indent=2))
    (out / "stats.json").write_text(json.dumps(run.stats.as_dict(), indent=2))
    paths["config"] = out / "config.json"
    paths["stats"] = out / "stats.json"
    try:
        from mae_domains.evaluation.model_card import write_model_card
    except ImportError:
        return paths
    paths["model_card"] = write_model_card(out, info)
    return paths


def _timm_name(preset: str, patch: int) -> str | None:
    known = {"tiny": "vit_tiny", "small": "vit_small", "base": "vit_base", "large": "vit_large", "huge": "vit_huge"}
    return f"{known[preset]}_patch{patch}_224" if preset in known else None
