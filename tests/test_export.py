"""Exports are usable outside this tool: timm rebuilds every 2D preset and patch size from config.json;
band-group and time-series exports say what they are and what they read; files are readable by others."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from mae_domains.config import dump_config, load_config
from mae_domains.registry import get_adapter
from mae_domains.runs import LoadedModel, build_model, export_run, load_model
from mae_domains.runs.encoder_weights import NATIVE_FORMAT, TIMM_FORMAT, export_encoder_state
from mae_domains.runs.export import export_info
from mae_domains.runs.model import grid_hw
from mae_domains.testing.conformance import Context, SyntheticDataset
from mae_domains.data.dataset import collate_items


def write_run(name: str, run_dir: Path):
    """A run folder as the engine leaves it, holding the adapter's tiny (micro, 32 px) model."""
    ctx = Context(get_adapter(name))
    model = ctx.model()
    run_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": name, "step": 3}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")
    (run_dir / "stats.json").write_text(json.dumps(ctx.stats.as_dict()))
    batch = collate_items([SyntheticDataset(ctx.adapter, ctx.stats, 2)[i] for i in range(2)])
    return model.eval(), batch, ctx.adapter


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_timm_create_model_rebuilds_every_2d_preset_and_patch_size(preset):
    """``timm.create_model(**config["timm_model"])`` gives a model the exported weights load into strictly
    (a registered base name plus patch_size / img_size / in_chans), and it embeds like our encoder."""
    for patch in (8, 14, 16):
        config = load_config(None, ["adapter=image", f"model.preset={preset}", f"model.patch_size={patch}",
                                    f"model.img_size={2 * patch}", "model.in_chans=3", "model.decoder_depth=1",
                                    "model.decoder_embed_dim=32", "model.decoder_num_heads=4"])
        adapter, model, config = build_model(config)
        loaded = LoadedModel(adapter, model.eval(), None, config, 5, Path("memory"))
        state, weights_format = export_encoder_state(model, grid_hw(config))
        info = json.loads(json.dumps(export_info(loaded, weights_format)))  # as config.json holds it
        assert weights_format == TIMM_FORMAT
        kwargs = info["timm_model"]
        assert timm.is_model(kwargs["model_name"]) and kwargs["model_name"].startswith(f"vit_{preset}_")
        assert (kwargs["patch_size"], kwargs["img_size"], kwargs["in_chans"]) == (patch, 2 * patch, 3)
        compare = preset == "tiny" and patch == 16
        with torch.device("cpu" if compare else "meta"):  # shapes and names only: no weight init
            vit = timm.create_model(**kwargs).eval()
        vit.load_state_dict(state, strict=True, assign=not compare)
        if compare:
            images = torch.randn(2, 3, 32, 32)
            with torch.no_grad():
                ours = model.encoder.forward_features(images)
                torch.testing.assert_close(vit.forward_features(images), ours, atol=2e-4, rtol=1e-4)
        del vit, model


def test_micro_export_gives_the_vision_transformer_keywords(tmp_path):
    write_run("image", tmp_path / "run")
    paths = export_run(tmp_path / "run", tmp_path / "export")
    info = json.loads(paths["config"].read_text())
    assert info["timm_model"] is None  # micro is not a timm size
    vit = timm.models.VisionTransformer(**info["timm_vision_transformer"])
    vit.load_state_dict(load_file(paths["encoder"]), strict=True)
    card = paths["model_card"].read_text()
    assert "timm.create_model(\"local-dir:.\", pretrained=True)" in card
    assert "load_model" in card


def test_band_group_export_says_what_it_is_and_what_it_reads(tmp_path):
    model, batch, adapter = write_run("remote_sensing.multispectral", tmp_path / "run")
    paths = export_run(tmp_path / "run", tmp_path / "export")
    text = paths["config"].read_text()
    info = json.loads(text)
    bands = list(adapter.bands)
    assert info["format"] == NATIVE_FORMAT and info["timm_model"] is None and info["timm_vision_transformer"] is None
    assert info["architecture"] == "mae_domains.GridEncoder"
    assert "not a timm model" in info["architecture_description"] and "BandGroupPatchEmbed" in info["architecture_description"]
    assert info["loader"]["function"] == "mae_domains.runs.load_model"
    assert any(k.startswith("embedding.projs.") for k in load_file(paths["encoder"]))
    # the real input: 10 bands in order, three groups, normalization per band, options with defaults
    assert info["in_chans"] == len(bands) == 10 and info["run_config"]["model"]["in_chans"] == 10
    assert '"in_chans": 3' not in text
    contract = info["input"]
    assert contract["in_chans"] == 10 and contract["channels"] == bands
    assert contract["band_groups"] == {"+".join(g): list(g) for g in adapter.groups}
    assert contract["normalization"]["channels"] == bands and len(contract["normalization"]["mean"]) == 10
    assert contract["adapter_options"]["min_valid_fraction"] == 0.5  # a default, never set by the run
    assert {"gsd", "target_gsd"} <= set(contract["spacing"])
    card = paths["model_card"].read_text()
    assert "- Input channels: 10" in card and "| 9 | B12 |" in card and "B5+B6+B7+B8A: B5, B6, B7, B8A" in card
    assert "mae_domains.runs.load_model" in card and "not a timm model" in card and "timm.create_model" not in card
    assert "`min_valid_fraction`: `0.5`" in card and "gsd = " in card
    # the shipped loader rebuilds it
    loaded = load_model(tmp_path / "export")
    with torch.no_grad():
        assert torch.equal(loaded.adapter.embed(loaded.model, batch, torch.device("cpu")),
                           adapter.embed(model, batch, torch.device("cpu")))


def test_time_series_export_states_frames_and_dates(tmp_path):
    write_run("remote_sensing.temporal", tmp_path / "run")
    paths = export_run(tmp_path / "run", tmp_path / "export")
    info = json.loads(paths["config"].read_text())
    contract = info["input"]
    assert contract["layout"].startswith("(T, C, H, W)") and contract["frames"] == 3 and "date" in contract["dates"]
    assert contract["in_chans"] == 6 and info["in_chans"] == 6 and info["timm_model"] is None
    card = paths["model_card"].read_text()
    assert "- Frames per sample: 3" in card and "- Dates: one acquisition date per frame" in card
    assert "- Input channels: 6" in card and "(T, C, H, W)" in card


def test_2d_card_shows_the_timm_call(tmp_path):
    write_run("image", tmp_path / "run")
    paths = export_run(tmp_path / "run", tmp_path / "export")
    info = json.loads(paths["config"].read_text())
    assert info["input"]["in_chans"] == 3 and info["input"]["layout"] == "(C, H, W)"
    assert info["adapter_options"] == {"crop_scale": [0.2, 1.0], "hflip": True}


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_export_files_get_ordinary_permissions(tmp_path, umask):
    write_run("image", tmp_path / "run")
    previous = os.umask(umask)
    try:
        paths = export_run(tmp_path / "run", tmp_path / "export")
    finally:
        os.umask(previous)
    assert set(paths) == {"encoder", "config", "stats", "model_card"}
    for kind, path in paths.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, kind
