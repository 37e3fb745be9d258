"""The ``hf`` export layout: a Hub model repository that reloads offline (folder or Hub id) into the same
embeddings, carries the input contract (bands, wavelengths, GSD, normalization) in config.json and the
card, and that timm loads strictly with our mean and std."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml
from timm.data import resolve_data_config

from mae_domains.cli import main
from mae_domains.config import dump_config
from mae_domains.data.dataset import collate_items
from mae_domains.registry import get_adapter
from mae_domains.runs import export_run, load_model
from mae_domains.runs.hub import HubUnavailableError
from mae_domains.testing.conformance import Context, SyntheticDataset


def write_run(name: str, run_dir: Path):
    """A run folder as the engine leaves it, with the adapter's micro model (32 px); model and a batch."""
    ctx = Context(get_adapter(name))
    model = ctx.model().eval()
    run_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": name, "step": 7}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")
    batch = collate_items([SyntheticDataset(ctx.adapter, ctx.stats, 2)[i] for i in range(2)])
    return model, batch, ctx


def embeddings(adapter, model, batch) -> torch.Tensor:
    with torch.no_grad():
        return adapter.embed(model, batch, "cpu")


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    model, batch, ctx = write_run("image", root / "run")
    paths = export_run(root / "run", root / "hf", layout="hf", license="apache-2.0")
    return root / "hf", paths, model, batch, ctx


def test_hf_folder_is_a_hub_repository_and_reloads_to_the_same_embeddings(image_export):
    out, paths, model, batch, ctx = image_export
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "stats.json"]
    loaded = load_model(out)
    assert loaded.kind == "export" and loaded.step == 7
    assert torch.equal(embeddings(loaded.adapter, loaded.model, batch), embeddings(ctx.adapter, model, batch))
    meta = front_matter(paths["model_card"].read_text())
    assert meta["library_name"] == "timm" and meta["pipeline_tag"] == "image-feature-extraction"
    assert meta["license"] == "apache-2.0" and {"mae-domains", "masked-autoencoder", "timm"} <= set(meta["tags"])


def test_card_and_config_state_the_input_contract(image_export):
    out, paths, _, _, ctx = image_export
    config = json.loads(paths["config"].read_text())
    contract = config["input"]
    assert (contract["patch_size"], contract["img_size"], contract["in_chans"]) == (8, 32, 3)
    assert contract["normalization"]["mean"] == pytest.approx(ctx.stats.mean)
    card = paths["model_card"].read_text()
    assert "Patch size: 8" in card and "Input size: 32" in card and f"{ctx.stats.std[0]:.6g}" in card
    assert 'timm.create_model("hf-hub:<owner>/<name>", pretrained=True)' in card


def test_timm_loads_the_export_strictly_with_our_mean_and_std(image_export):
    out, paths, model, _, ctx = image_export
    config = json.loads(paths["config"].read_text())
    vit = timm.create_model(f"local-dir:{out}", pretrained=True).eval()  # strict load of model.safetensors
    data = resolve_data_config(model=vit)
    assert data["mean"] == pytest.approx(tuple(ctx.stats.mean)) and data["std"] == pytest.approx(tuple(ctx.stats.std))
    assert data["input_size"] == (3, 32, 32) and data["crop_pct"] == 1.0
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit.forward_features(images), model.encoder.forward_features(images),
                                   atol=2e-4, rtol=1e-4)
    # The other route: a registered name, the saved model_args and pretrained_cfg as an overlay.
    overlay = dict(config["pretrained_cfg"], file=str(out / "model.safetensors"))
    vit2 = timm.create_model(config["architecture"], pretrained=True, pretrained_cfg_overlay=overlay,
                             **config["model_args"])
    assert resolve_data_config(model=vit2)["mean"] == pytest.approx(tuple(ctx.stats.mean))
    assert config["num_classes"] == 0 and vit2.num_classes == 0


def test_hub_id_loads_through_huggingface_hub(image_export, monkeypatch):
    out, _, model, batch, ctx = image_export
    import huggingface_hub

    asked = {}

    def snapshot_download(repo_id, revision=None, cache_dir=None, allow_patterns=None):  # offline stand-in
        asked.update(repo_id=repo_id, revision=revision)
        assert "*.safetensors" in allow_patterns and not any(p.endswith((".pt", ".pth", ".bin")) for p in allow_patterns)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    loaded = load_model("hf-hub:someone/mae-micro@v1")
    assert asked == {"repo_id": "someone/mae-micro", "revision": "v1"}
    assert torch.equal(embeddings(loaded.adapter, loaded.model, batch), embeddings(ctx.adapter, model, batch))


def test_missing_huggingface_hub_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(HubUnavailableError, match="pip install huggingface_hub"):
        load_model("hf-hub:someone/model")
    assert main(["export", "--run", "hf-hub:someone/model", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "huggingface_hub" in err[0]


def test_remote_sensing_export_carries_wavelengths_and_gsd(tmp_path):
    model, batch, ctx = write_run("remote_sensing.multispectral", tmp_path / "run")
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "hf"), "--format", "hf"]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    contract = config["input"]
    wavelengths = dict(zip(contract["channels"], contract["wavelengths_nm"]))
    assert wavelengths["B2"] == 490.0 and wavelengths["B4"] == 665.0 and wavelengths["B12"] == 2190.0
    assert contract["gsd_m"] == 10.0 and contract["native_gsd_m"][contract["channels"].index("B11")] == 20.0
    assert config["architecture"] == "mae_domains.GridEncoder" and not config.get("pretrained_cfg")
    card = (tmp_path / "hf" / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "mae-domains" and meta["license"] == "other" and "remote-sensing" in meta["tags"]
    assert "centre wavelength (nm)" in card and "| 665 |" in card and "10 m" in card
    loaded = load_model(tmp_path / "hf")
    assert torch.equal(embeddings(loaded.adapter, loaded.model, batch), embeddings(ctx.adapter, model, batch))


def test_results_added_to_a_hub_card_keep_its_front_matter(image_export):
    from mae_domains.evaluation.results_card import write_model_card

    out, paths, _, _, _ = image_export
    before = front_matter(paths["model_card"].read_text())
    config = json.loads(paths["config"].read_text())
    card = write_model_card(out, config)  # the evaluation package's writer, given the folder
    text = card.read_text()
    assert card.name == "README.md" and front_matter(text) == before and not (out / "MODEL_CARD.md").exists()
    assert "Weights: model.safetensors" in text and "timm VisionTransformer: CLS token" in text
    assert text.count("---\n") == 2
