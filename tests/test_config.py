"""Typed YAML recipes: defaults, overrides, unknown keys with suggestions, type errors naming the key."""

from pathlib import Path

import pytest

from mae_domains.config import ConfigError, RunConfig, dump_config, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_defaults_follow_the_mae_recipe():
    cfg = RunConfig()
    assert cfg.mask.ratio is None and cfg.mask.strategy is None  # decided by the adapter's recipe
    assert cfg.optim.betas == [0.9, 0.95] and cfg.optim.weight_decay == 0.05
    assert cfg.optim.base_lr == 1.5e-4 and cfg.model.decoder_embed_dim is None  # the preset's decoder
    from mae_domains.models.presets import with_preset_decoder

    base = with_preset_decoder(cfg.model)  # ViT-B: the MAE paper's 512-wide, 8-block decoder
    assert (base.decoder_embed_dim, base.decoder_depth, base.decoder_num_heads) == (512, 8, 16)
    tiny = with_preset_decoder(type(cfg.model)(preset="tiny"))
    assert (tiny.decoder_embed_dim, tiny.decoder_depth) == (128, 4)
    explicit = with_preset_decoder(type(cfg.model)(preset="tiny", decoder_depth=2))
    assert explicit.decoder_depth == 2 and explicit.decoder_embed_dim == 128


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("adapter: image\nmodel:\n  preset: small\nengine:\n  batch_size: 8\n")
    cfg = load_config(path, ["model.preset=tiny", "engine.max_steps=3", "data.sources=[a, b]", "optim.clip_grad=1"])
    assert cfg.model.preset == "tiny" and cfg.engine.batch_size == 8 and cfg.engine.max_steps == 3
    assert cfg.data.sources == ["a", "b"] and cfg.optim.clip_grad == 1.0
    assert load_config(None, ["optim.base_lr=1e-4"]).optim.base_lr == 1e-4  # YAML 1.1 reads this as a string


def test_unknown_key_did_you_mean(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  presett: tiny\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'model.presett'.*did you mean 'preset'"):
        load_config(path)
    with pytest.raises(ConfigError, match="did you mean 'engine'"):
        load_config(None, ["engin.batch_size=2"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="engine.batch_size: expected an integer"):
        load_config(None, ["engine.batch_size=big"])
    with pytest.raises(ConfigError, match="mask.ratio must be in"):
        load_config(None, ["mask.ratio=1.5"])


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="nowhere.yaml: config file not found"):
        load_config(tmp_path / "nowhere.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.preset=small", "data.options={crop_scale: [0.5, 1.0]}"])
    dump_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe):
    from mae_domains.registry import get_adapter

    cfg = load_config(recipe)
    adapter = get_adapter(cfg.adapter, cfg.data.options).bind(cfg)  # adapter options are checked too
    assert adapter.name == cfg.adapter


@pytest.mark.parametrize("override, message", [
    ("engine.max_steps=-5", "engine.max_steps must be at least 1"),
    ("optim.warmup_steps=-1", "optim.warmup_steps must not be negative"),
    ("engine.checkpoint_every=0", "engine.checkpoint_every must be at least 1"),
    ("engine.log_every=0", "engine.log_every must be at least 1"),
    ("engine.device=tpu", "engine.device must be"),
    ("engine.threads=-2", "engine.threads must be at least 1"),
    ("model.patch_size=0", "model.patch_size must be at least 1"),
    ("model.img_size=-3", "model.img_size must be at least 1"),
    ("mask.ratio=0", "mask.ratio must be in"),
    ("data.num_workers=-1", "data.num_workers must not be negative"),
    ("optim.base_lr=0", "optim.base_lr must be positive"),
    ("model.preset=!!python/object/apply:os.system [echo]", "override model.preset: not a plain YAML value"),
])
def test_meaningless_settings_are_refused_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
