"""A failed --resume never breaks the run: overrides are checked against the checkpoint before anything is
loaded or written, and run files are only written once the run is known good."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from mae_domains.cli import main
from mae_domains.config import ConfigError
from mae_domains.engine import pretrain
from mae_domains.runs.resume import RESUMABLE, check_resume_config, resume_config
from mae_domains.weights import CheckpointFormatError
from tests.engine.conftest import MICRO, make_config, write_pngs

RUN = ["engine.batch_size=4", "engine.max_steps=2", "data.num_workers=0", "engine.log_every=1"]
RUN_FILES = ("config.yaml", "stats.json", "checkpoint.pt", "metrics.csv", "skipped.csv")


def fingerprint(run: Path) -> dict[str, str]:
    return {name: hashlib.sha256((run / name).read_bytes()).hexdigest() for name in RUN_FILES}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    write_pngs(tmp_path / "archive", 12)
    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--adapter", "image", "--data", str(tmp_path / "archive"), "--out", str(run),
                 *MICRO, *RUN]) == 0
    return run


def test_refused_override_leaves_the_run_resumable(run, capsys):
    before = fingerprint(run)
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run), "model.preset=tiny", "optim.base_lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "model.preset='tiny' (the run has 'micro')" in err and "optim.base_lr=0.1" in err
    assert "engine.max_steps" in err  # the message lists what may change
    assert fingerprint(run) == before  # nothing was written
    # and the run still resumes, with an override that may change
    assert main(["-q", "pretrain", "--resume", str(run), "engine.max_steps=3", "data.num_workers=1"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3


def test_resume_config_comes_from_the_checkpoint(run):
    """A config.yaml edited (or broken by an older version) does not decide what the run is."""
    (run / "config.yaml").write_text("model: {preset: tiny}\n")
    config = resume_config(run, ["engine.max_steps=5"])
    assert config.model.preset == "micro" and config.engine.max_steps == 5


def test_what_may_change_on_resume(tmp_path):
    saved = make_config(tmp_path, *RUN).to_dict()
    check_resume_config(saved, make_config(tmp_path, *RUN, "engine.max_steps=50", "engine.checkpoint_every=7",
                                           "data.num_workers=3", "engine.figure_every=5", "eval.knn_k=5"), "run")
    for change in ("model.patch_size=4", "data.options.crop_scale=[0.5,1.0]", "engine.seed=1", "engine.batch_size=8",
                   "optim.accum_steps=2", f"data.sources=[{tmp_path / 'other'}]"):
        with pytest.raises(ConfigError, match=r"cannot resume with .*on resume only these may change") as info:
            check_resume_config(saved, make_config(tmp_path, *RUN, change), "run")
        assert change.split("=")[0].split(".crop_scale")[0] in str(info.value)
    assert "engine.max_steps" in RESUMABLE and "model.preset" not in RESUMABLE


def test_a_checkpoint_that_does_not_fit_writes_nothing(run, tmp_path):
    """Model weights of another shape: one line naming the checkpoint, and config.yaml (here with a changed
    worker count, which a resume may change) is not rewritten before the failure."""
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    key = next(k for k in state["model"] if k.endswith("weight") and state["model"][k].ndim == 2)
    state["model"][key] = torch.zeros(3, 3)
    torch.save(state, run / "checkpoint.pt")
    before = fingerprint(run)
    cfg = make_config(tmp_path / "archive", *RUN, "data.num_workers=1")
    with pytest.raises(CheckpointFormatError) as info:
        pretrain(cfg, run, resume=True)
    message = str(info.value)
    assert message.startswith(f"{run / 'checkpoint.pt'}: the checkpoint does not fit") and key in message
    assert "\n" not in message
    assert fingerprint(run) == before
    assert not (run / "run.lock").exists()
