"""One loader for every saved form of a model: a run folder, its checkpoint.pt, an export folder, its
encoder.safetensors and foreign timm weights all give the embeddings of the trained model, for a 2D,
a band-group and a temporal grid adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from mae_domains.config import dump_config
from mae_domains.data.dataset import collate_items
from mae_domains.registry import get_adapter
from mae_domains.runs import export_run, load_model, load_run, open_weights
from mae_domains.runs.encoder_weights import NATIVE_FORMAT, TIMM_FORMAT
from mae_domains.testing.conformance import Context, SyntheticDataset
from mae_domains.weights import CheckpointFormatError

ADAPTERS = ["image", "remote_sensing.multispectral", "remote_sensing.temporal"]
CPU = torch.device("cpu")


def write_run(name: str, run_dir: Path) -> tuple[torch.nn.Module, dict, object]:
    """A run folder as the engine leaves it (checkpoint.pt with config, statistics, adapter and step;
    config.yaml; stats.json), holding a tiny model with randomized weights; returns the model, a
    batch of the adapter's synthetic samples and the adapter."""
    ctx = Context(get_adapter(name))
    model = ctx.model()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    run_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": name, "step": 7}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")
    (run_dir / "stats.json").write_text(json.dumps(ctx.stats.as_dict()))
    dataset = SyntheticDataset(ctx.adapter, ctx.stats, 3)
    return model.eval(), collate_items([dataset[i] for i in range(3)]), ctx.adapter


def embeddings(adapter, model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {pool: adapter.embed(model, batch, CPU, pool) for pool in ("cls", "avg")}


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_saved_form_loads_back_with_identical_embeddings(name, tmp_path):
    model, batch, adapter = write_run(name, tmp_path / "run")
    expected = embeddings(adapter, model, batch)
    paths = export_run(tmp_path / "run", tmp_path / "export")
    assert {"encoder", "config", "stats", "model_card"} <= set(paths)
    sources = [tmp_path / "run", tmp_path / "run" / "checkpoint.pt", tmp_path / "export", paths["encoder"]]
    for source in sources:
        loaded = load_model(source)
        assert loaded.config.adapter == name and loaded.adapter.name == name and loaded.step == 7
        assert loaded.stats is not None and loaded.stats.mean == pytest.approx(json.loads(paths["stats"].read_text())["mean"])
        assert loaded.has_decoder == (loaded.kind == "checkpoint") and not loaded.model.training
        got = embeddings(loaded.adapter, loaded.model, batch)
        for pool in expected:
            assert torch.equal(got[pool], expected[pool]), f"{source}: {pool} embeddings differ"
    # an export of an export is the same export
    again = export_run(tmp_path / "export", tmp_path / "again")
    assert load_file(again["encoder"]).keys() == load_file(paths["encoder"]).keys()
    assert torch.equal(embeddings(*_model(again["encoder"]), batch)["cls"], expected["cls"])


def _model(path: Path):
    loaded = load_model(path)
    return loaded.adapter, loaded.model


def test_export_formats_timm_for_2d_and_own_keys_otherwise(tmp_path):
    for name in ADAPTERS:
        write_run(name, tmp_path / name / "run")
        info = json.loads(export_run(tmp_path / name / "run", tmp_path / name / "export")["config"].read_text())
        assert info["format"] == (TIMM_FORMAT if name == "image" else NATIVE_FORMAT), name
        assert info["run_config"]["adapter"] == name and info["pretrain_steps"] == 7
        assert open_weights(tmp_path / name / "export").kind == "export"
    assert info["timm_model"] is None  # temporal: no timm counterpart


def test_foreign_timm_weights_load_with_a_config(tmp_path):
    """A timm ViT's own state dict (saved by timm, not by us) loads into the image adapter's grid model
    given a run config, and the CLS embedding equals timm's."""
    model, batch, adapter = write_run("image", tmp_path / "run")
    export_run(tmp_path / "run", tmp_path / "export")
    vit = timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=0)
    vit.load_state_dict(load_file(tmp_path / "export" / "encoder.safetensors"), strict=True)
    torch.save({"model": vit.state_dict()}, tmp_path / "vit.pth")
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    loaded = load_model(tmp_path / "vit.pth", config=config)
    assert loaded.kind == "foreign" and loaded.stats is None
    got = embeddings(loaded.adapter, loaded.model, batch)["cls"]
    assert torch.equal(got, embeddings(adapter, model, batch)["cls"])
    with torch.no_grad():
        torch.testing.assert_close(got, vit.forward_features(batch["image"])[:, 0], atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointFormatError, match="no run config"):
        load_model(tmp_path / "vit.pth")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nor an export folder"):
        load_model(tmp_path / "empty")
    model, _, _ = write_run("remote_sensing.temporal", tmp_path / "run")
    export_run(tmp_path / "run", tmp_path / "export")
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        load_run(tmp_path / "export")
    state = load_file(tmp_path / "export" / "encoder.safetensors")
    state.pop(next(k for k in state if k.startswith("blocks.")))
    torch.save({"model": state}, tmp_path / "partial.pth")
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    with pytest.raises(CheckpointFormatError, match="missing blocks"):
        load_model(tmp_path / "partial.pth", config=config)
