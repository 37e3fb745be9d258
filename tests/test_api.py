"""The notebook API: ``mae_domains.load_model`` / ``embed`` / ``preprocess`` at the top level (importing the
package stays light), a callable encoder with ``forward_features``, embeddings of arrays and tensors without
an adapter's batch dict, and a model card whose mae-domains snippet runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mae_domains
from mae_domains.config import dump_config
from mae_domains.registry import get_adapter
from mae_domains.runs import export_run
from mae_domains.testing.conformance import Context


def write_run(adapter: str, run_dir: Path) -> Context:
    ctx = Context(get_adapter(adapter))
    run_dir.mkdir(parents=True)
    torch.save({"model": ctx.model().state_dict(), "config": ctx.config.to_dict(), "stats": ctx.stats.as_dict(),
                "adapter": adapter, "step": 3}, run_dir / "checkpoint.pt")
    dump_config(ctx.config, run_dir / "config.yaml")
    return ctx


def test_importing_the_package_stays_light_and_exposes_the_api():
    code = ("import sys, mae_domains; light = 'torch' not in sys.modules; "
            "f = mae_domains.load_model; print(light, f.__module__, sorted(set(mae_domains.API) & set(dir(mae_domains))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout.split()
    assert out[:2] == ["True", "mae_domains.runs.model"]
    assert " ".join(out[2:]) == "['embed', 'load_model', 'preprocess']"
    with pytest.raises(AttributeError):
        mae_domains.no_such_thing


def test_encoder_is_callable_and_embed_matches_the_adapter_path(tmp_path):
    ctx = write_run("image", tmp_path / "run")
    model = mae_domains.load_model(tmp_path / "run")
    batch = ctx.batch()  # normalized by the adapter's transform
    with torch.no_grad():
        expected = ctx.adapter.embed(model.model, batch, torch.device("cpu"))
        cls = model.encoder(batch["image"])
        tokens = model.encoder.forward_features(batch["image"])
    torch.testing.assert_close(cls, expected)
    torch.testing.assert_close(cls, tokens[:, 0])
    assert tokens.shape == (2, 1 + 16, 64)
    torch.testing.assert_close(mae_domains.embed(model, batch["image"], normalize=False), expected)
    # raw values (as read) are normalized with the run's statistics: numpy arrays, one by one in a list
    mean, std = np.array(ctx.stats.mean)[:, None, None], np.array(ctx.stats.std)[:, None, None]
    raw = [np.asarray(image) * std + mean for image in batch["image"].numpy()]
    torch.testing.assert_close(mae_domains.preprocess(model, raw), batch["image"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mae_domains.embed(model, raw), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mae_domains.embed(model, raw, pool="avg", batch_size=1),
                               ctx.adapter.embed(model.model, batch, torch.device("cpu"), "avg"), atol=1e-4, rtol=1e-4)


def test_wrong_channel_count_and_meta_length_are_refused(tmp_path):
    write_run("image", tmp_path / "run")
    model = mae_domains.load_model(tmp_path / "run")
    with pytest.raises(ValueError, match=r"images of shape \(2, 1, 32, 32\): expected a batch with 3 channels"):
        mae_domains.embed(model, torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="3 meta entries for 2 images"):
        mae_domains.embed(model, torch.rand(2, 3, 32, 32), meta=[{}, {}, {}])


def test_meta_reaches_the_adapter(tmp_path):
    """Channel names select the microscopy channel codes: with the files' names the embedding is the adapter's."""
    ctx = write_run("microscopy.channel_agnostic", tmp_path / "run")
    model = mae_domains.load_model(tmp_path / "run")
    batch = ctx.batch()
    with torch.no_grad():
        expected = ctx.adapter.embed(model.model, batch, torch.device("cpu"))
    ours = mae_domains.embed(model, batch["image"], meta=batch["meta"], normalize=False)
    torch.testing.assert_close(ours, expected)
    names = batch["meta"][0]["channel_names"]
    reordered = mae_domains.embed(model, batch["image"], meta={"channel_names": names[::-1]}, normalize=False)
    assert not torch.allclose(reordered, expected)


@pytest.mark.parametrize("adapter", ["image", "remote_sensing.temporal"])
def test_model_card_mae_domains_snippet_runs_as_written(adapter, tmp_path, monkeypatch):
    write_run(adapter, tmp_path / "run")
    export_run(tmp_path / "run", tmp_path / "export")
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", card, re.S) if "import mae_domains" in b]
    monkeypatch.chdir(tmp_path / "export")
    scope: dict = {}
    exec(compile(block, "MODEL_CARD.md", "exec"), scope)
    assert scope["features"].shape == (2, 64) and torch.isfinite(scope["features"]).all()
