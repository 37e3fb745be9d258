"""``engine.tensorboard=true`` without the tensorboard package: the run goes on and says how to install it."""

from __future__ import annotations

import logging
import sys

from mae_domains.engine import pretrain

from .conftest import make_config


def test_missing_tensorboard_says_how_to_install_it(png_archive, tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # an import of it raises ImportError
    cfg = make_config(png_archive, "engine.batch_size=4", "engine.max_steps=1", "data.num_workers=0",
                      "engine.tensorboard=true")
    with caplog.at_level(logging.WARNING, logger="mae_domains.engine"):
        assert pretrain(cfg, tmp_path / "run").steps == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "tensorboard" in r.getMessage()]
    assert len(warnings) == 1 and "pip install 'mae-domains[tensorboard]'" in warnings[0]
    assert not (tmp_path / "run" / "tensorboard").exists()
