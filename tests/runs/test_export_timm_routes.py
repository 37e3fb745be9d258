"""The default export loads with timm's two standard calls, with the run's mean and std:
``timm.create_model(**config["timm_model"], pretrained=True, pretrained_cfg_overlay=dict(file=...))`` and
``timm.create_model("local-dir:<export>", pretrained=True)``; the model card's timm snippet runs as written."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import timm
import torch
from timm.data import resolve_data_config

from mae_domains.config import dump_config
from mae_domains.registry import get_adapter
from mae_domains.runs import export_run
from mae_domains.testing.conformance import Context


def write_run(run_dir: Path, preset: str):
    """An image run folder holding a 2-block model of ``preset`` width on 32 px inputs, 8 px patches."""
    ctx = Context(get_adapter("image"))
    ctx.config.model = dataclasses.replace(ctx.config.model, preset=preset, depth=2)
    model = ctx.model().eval()
    run_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": "image", "step": 5}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")
    return model, ctx.stats


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model, stats = write_run(root / "run", "tiny")
    export_run(root / "run", root / "export")
    return root / "export", model, stats


def same_features(vit, model) -> None:
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit.eval().forward_features(images), model.encoder.forward_features(images),
                                   atol=2e-4, rtol=1e-4)


def has_run_normalization(vit, stats) -> None:
    data = resolve_data_config(model=vit)
    assert data["mean"] == pytest.approx(tuple(stats.mean)) and data["std"] == pytest.approx(tuple(stats.std))
    assert tuple(data["input_size"]) == (3, 32, 32)


def test_timm_model_keywords_with_pretrained_true_and_a_file_overlay(tiny_export):
    out, model, stats = tiny_export
    config = json.loads((out / "config.json").read_text())
    assert "pretrained" not in config["timm_model"]
    vit = timm.create_model(**config["timm_model"], pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(out / "encoder.safetensors")))
    same_features(vit, model)
    has_run_normalization(vit, stats)
    assert vit.num_classes == 0


def test_local_dir_loads_the_default_export(tiny_export):
    out, model, stats = tiny_export
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["layout"] == "mae-domains"
    assert "timm VisionTransformer" in config["architecture_description"]
    vit = timm.create_model(f"local-dir:{out}", pretrained=True)
    same_features(vit, model)
    has_run_normalization(vit, stats)


def test_local_dir_loads_a_size_timm_does_not_register(tmp_path):
    model, stats = write_run(tmp_path / "run", "micro")
    export_run(tmp_path / "run", tmp_path / "export")
    vit = timm.create_model(f"local-dir:{tmp_path / 'export'}", pretrained=True)
    same_features(vit, model)
    has_run_normalization(vit, stats)


def test_model_card_timm_snippet_runs_as_written(tiny_export, monkeypatch):
    out, model, stats = tiny_export
    card = (out / "MODEL_CARD.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", card, re.S) if "import timm" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(out)
    scope: dict = {}
    exec(compile(blocks[0], "MODEL_CARD.md", "exec"), scope)
    same_features(scope["model"], model)
    assert scope["config"]["mean"] == pytest.approx(tuple(stats.mean))
