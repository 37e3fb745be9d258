"""One configuration path: the run's ``model`` and ``mask`` sections build every adapter's GridMAE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mae_domains.config import ConfigError, load_config
from mae_domains.grid import GridBatch
from mae_domains.grid_adapter import GridAdapter
from mae_domains.masking import ColorNoise, UniformNoise
from mae_domains.models import GridMAE, PatchEmbed2D
from mae_domains.models.decoding import CrossAttentionDecoder, SelfAttentionDecoder
from mae_domains.registry import get_adapter

MICRO = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "model.decoder_embed_dim=32",
         "model.decoder_depth=1", "model.decoder_num_heads=4"]


def bound(name: str, *overrides: str, options: dict | None = None):
    config = load_config(None, [f"adapter={name}", *MICRO, *overrides])
    adapter = get_adapter(name, options or config.data.options).bind(config)
    return adapter, adapter.build_model(config.model, config.mask)


@pytest.mark.parametrize("name, strategy, axes", [
    ("image", "random", ()),
    ("remote_sensing.multispectral", "independent", ("group",)),
    ("remote_sensing.temporal", "independent", ("time",)),
])
def test_every_builtin_adapter_builds_a_grid_mae_with_its_recipe_defaults(name, strategy, axes):
    adapter, model = bound(name)
    assert isinstance(adapter, GridAdapter) and isinstance(model, GridMAE)
    assert adapter.config.mask.ratio == adapter.default_mask_ratio == model.mask_ratio == 0.75
    assert adapter.config.mask.strategy == strategy
    assert model.masker.mode == strategy and model.masker.axes == axes


def test_the_config_overrides_the_recipe_and_feeds_the_builder():
    adapter, model = bound("image", "mask.ratio=0.9", "model.decoder=cross", "model.query=0.25", "model.depth=1",
                           "model.norm_pix_loss=false", "model.loss=l1")
    assert model.mask_ratio == 0.9 and adapter.config.mask.ratio == 0.9
    assert isinstance(model.decoder, CrossAttentionDecoder) and model.query == 0.25
    assert len(model.encoder.blocks) == 1 and model.target.norm_pix is False and model.loss_kind == "l1"
    out = model(torch.randn(2, 3, 32, 32), mask_seeds=[1, 2])
    # CrossMAE's count: N - int(N * (1 - r)) - int(N * (r - q)) = 16 - 1 - int(10.4) = 5
    assert out.masking.num_keep == int(16 * (1 - 0.9)) and out.query_ids.shape[1] == 16 - 1 - int(16 * (0.9 - 0.25))
    _, plain = bound("image")
    assert isinstance(plain.decoder, SelfAttentionDecoder) and plain.target.norm_pix is True


def test_colormae_noise_is_reachable_from_yaml(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"adapter": "image", "mask": {
        "ratio": 0.75, "noise": "green", "noise_cache": str(tmp_path / "noise")}}))
    config = load_config(recipe, MICRO)
    adapter = get_adapter("image").bind(config)
    model = adapter.build_model(config.model, config.mask)
    assert isinstance(model.masker.noise, ColorNoise) and model.masker.noise.settings.color == "green"
    images = torch.randn(2, 3, 32, 32)
    green = model(images, mask_seeds=[7, 8]).mask
    assert green.shape == (2, 16) and (green.sum(1) == 16 - int(16 * 0.25)).all()
    assert list((tmp_path / "noise").glob("*.npy")), "the noise bank is cached where the config says"
    _, uniform = bound("image")
    assert isinstance(uniform.masker.noise, UniformNoise)
    assert not torch.equal(uniform(images, mask_seeds=[7, 8]).mask, green)


def test_masking_along_an_axis_the_grid_lacks_is_a_config_error():
    with pytest.raises(ConfigError, match="mask.axis"):
        bound("image", "mask.strategy=consistent")
    with pytest.raises(ConfigError, match="mask.strategy must be one of"):
        load_config(None, ["mask.strategy=tube"])
    with pytest.raises(ConfigError, match="mask.ratio must be in"):
        load_config(None, ["mask.ratio=0"])
    with pytest.raises(ConfigError, match="model.decoder"):
        load_config(None, ["model.decoder=mlp"])


def test_pretraining_writes_the_resolved_mask_settings(tmp_path):
    from mae_domains.engine import pretrain
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    config = load_config(None, ["adapter=image", f"data.sources={[str(tmp_path)]}", *MICRO, "engine.batch_size=4",
                                "engine.max_steps=1", "data.num_workers=0", "engine.device=cpu"])
    pretrain(config, tmp_path / "run")
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["mask"]["ratio"] == 0.75 and written["mask"]["strategy"] == "random"


class TinyGridAdapter(GridAdapter):
    """A whole modality in a few lines: the embedding is all the model needs."""

    name = "test.tiny_grid"
    file_patterns = ("*.npy",)

    def build_embedding(self, model):
        return PatchEmbed2D(2, self.embed_dim(model), model.patch_size)

    def read(self, ref):
        from mae_domains.data.sample import Sample

        return Sample(np.load(ref).astype(np.float32), {"source": str(ref), "sample_id": Path(ref).stem})

    def transform(self, sample, seed, train, stats):
        shift = int(np.random.default_rng(seed).integers(32)) if train else 0  # a seeded circular shift
        return type(sample)(np.roll(sample.image, shift, axis=-1), sample.meta)

    def synthetic_sample(self, seed):
        from mae_domains.data.sample import Sample

        image = np.random.default_rng(seed).random((2, 32, 32), dtype=np.float32)
        return Sample(image, {"source": f"synthetic:{seed}", "sample_id": str(seed)})


def test_a_grid_adapter_needs_only_its_embedding(tmp_path):
    from mae_domains.testing import assert_adapter_conforms

    assert_adapter_conforms(TinyGridAdapter)
    adapter = TinyGridAdapter().bind(load_config(None, MICRO))
    model = adapter.build_model(adapter.config.model, adapter.config.mask)
    batch = {"image": torch.rand(2, 2, 32, 32), "mask_seed": torch.tensor([1, 2])}
    out = model(**adapter.model_inputs(batch, torch.device("cpu")))
    assert torch.isfinite(out.loss)
    figure = adapter.render_reconstruction(model, batch, out, tmp_path / "figure.png")
    assert figure.is_file() and figure.stat().st_size > 1000
    assert adapter.embed(model, batch, torch.device("cpu"), "avg").shape == (2, 64)


def test_grid_batch_select_slices_per_sample_metadata():
    batch = GridBatch(torch.arange(4.0).reshape(4, 1, 1, 1), torch.ones(4, 1, 1, dtype=torch.bool),
                      {"spacing": torch.arange(8.0).reshape(4, 2), "channel_names": ["a"], "ids": list("wxyz")})
    part = batch.select(slice(1, 3))
    assert part.images.flatten().tolist() == [1.0, 2.0] and part.valid.shape[0] == 2
    assert part.meta["spacing"].tolist() == [[2.0, 3.0], [4.0, 5.0]]
    assert part.meta["ids"] == ["x", "y"] and part.meta["channel_names"] == ["a"]
