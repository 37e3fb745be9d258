"""Recipes ship inside the package and are addressed by name: ``--config medical_xray_vit_base`` (or an
unambiguous end of the name, ``xray_vit_base``) works outside the checkout; ``mae-domains recipes`` lists them
and ``mae-domains config show`` prints what a recipe and overrides resolve to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mae_domains.cli import main
from mae_domains.config import ConfigError, RECIPES_DIR, config_file, load_config, recipe_names

CHECKOUT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_recipe_of_the_checkout_is_in_the_package():
    assert recipe_names() == sorted(p.stem for p in CHECKOUT_CONFIGS.glob("*.yaml"))
    assert (RECIPES_DIR / "demo.yaml").read_bytes() == (CHECKOUT_CONFIGS / "demo.yaml").read_bytes()


def test_a_recipe_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    by_path = load_config(CHECKOUT_CONFIGS / "medical_xray_vit_base.yaml")
    for name in ("medical_xray_vit_base", "medical_xray_vit_base.yaml", "xray_vit_base"):
        config = load_config(name)
        assert config == by_path, name
    assert config.adapter == "medical.xray" and config.model.preset == "base" and config.model.in_chans == 1
    assert load_config("demo", ["engine.max_steps=7"]).engine.max_steps == 7


def test_a_file_of_that_name_wins_over_the_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("demo").write_text("adapter: medical.ct\n")
    assert load_config("demo").adapter == "medical.ct"


@pytest.mark.parametrize("name,needle", [
    ("vit_base", "several recipes end with that name (image_vit_base, medical_ct_vit_base"),
    ("medical_xray_vit_bsae", "config file not found, and no recipe has that name (did you mean 'medical_xray_vit_base'?)"),
    ("configs/medical_xray_vit_small.yaml", "the recipe ships with mae-domains: --config medical_xray_vit_small"),
    ("elsewhere/nothing.yaml", "elsewhere/nothing.yaml: config file not found"),
])
def test_names_that_do_not_resolve_say_why(name, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        config_file(name)
    assert needle in str(err.value)


def test_recipes_command_lists_each_recipe_with_its_adapter_and_paper(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in recipe_names():
        assert f"\n{name}  (adapter " in f"\n{out}"
    assert "medical_ct_vit_base  (adapter medical.ct, base preset)" in out
    assert "Masked Autoencoders Are Scalable Vision Learners" in out


def test_config_show_prints_the_resolved_config(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "show", "--recipe", "xray_vit_small", "model.preset=tiny", "engine.batch_size=8"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    expected = load_config("medical_xray_vit_small", ["model.preset=tiny", "engine.batch_size=8"])
    assert shown == expected.to_dict()
    assert shown["model"]["preset"] == "tiny" and shown["model"]["in_chans"] == 1
    assert main(["config", "show", "--adapter", "medical.ct", "model.presett=tiny"]) == 2
    assert "did you mean 'preset'" in capsys.readouterr().err


def test_demo_and_pretrain_take_a_recipe_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--config", "medical_xray_vit_small", "--data", str(tmp_path), "model.bogus=1"]) == 2
    assert "medical_xray_vit_small.yaml: unknown key 'model.bogus'" in capsys.readouterr().err


def test_pretrain_without_an_adapter_is_refused_unless_the_config_names_one(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no adapter given: pass --adapter NAME" in err
    assert not (tmp_path / "run").exists()
    # a config that names one is enough (the error then comes from the empty PNG, not from the adapter)
    assert main(["pretrain", "--config", "demo", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    assert "no adapter given" not in capsys.readouterr().err
