"""SIGTERM (cluster pre-emption): the run finishes the current step, writes a checkpoint and exits with
code 143; resuming gives bitwise the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mae_domains.cli import main
from mae_domains.engine import pretrain
from mae_domains.engine.preemption import PREEMPTED_EXIT_CODE, StopRequest
from mae_domains.engine.run_files import read_csv
from mae_domains.runs.lock import LOCK_NAME

from .conftest import MICRO, assert_optimizer_equal, assert_tensors_equal, load_checkpoint, make_config, write_pngs

STEPS = 10
SETTINGS = ("engine.batch_size=4", f"engine.max_steps={STEPS}", "engine.checkpoint_every=100", "engine.log_every=1",
            "model.drop_path_rate=0.1", "engine.seed=2")
SCRIPT = Path(__file__).with_name("slow_cli.py")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("preempt") / "archive"
    write_pngs(folder, 16, seed=3)
    return folder


@pytest.fixture(scope="module")
def uninterrupted(archive, tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("preempt") / "full"
    pretrain(make_config(archive, *SETTINGS, "data.num_workers=0"), run)
    return load_checkpoint(run)


def test_stop_request_takes_sigterm_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_mid_run_checkpoints_and_resumes_exactly(archive, uninterrupted, tmp_path):
    run = tmp_path / "run"
    signal_at_3 = lambda step, row: os.kill(os.getpid(), signal.SIGTERM) if step == 3 else None  # noqa: E731
    result = pretrain(make_config(archive, *SETTINGS, "data.num_workers=0"), run, on_step=signal_at_3)
    # the signal came after step 3's checkpoint decision, so step 4 ends the run
    assert result.stopped_by == "SIGTERM" and result.steps == 4 and load_checkpoint(run)["step"] == 4
    assert not (run / LOCK_NAME).exists()
    assert pretrain(make_config(archive, *SETTINGS, "data.num_workers=0"), run, resume=True).steps == STEPS
    assert_tensors_equal(uninterrupted["model"], load_checkpoint(run)["model"])


@pytest.mark.slow
def test_sigterm_to_a_real_cli_run(archive, uninterrupted, tmp_path):
    """SIGTERM to the process group (as a scheduler sends it, loader workers included): exit 143 after a
    checkpoint, and ``--resume`` ends with bitwise the uninterrupted weights and optimizer state (of a run
    without loader workers: the worker count does not change the run)."""
    run = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPT), "pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run),
           *MICRO, *SETTINGS, "data.num_workers=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    deadline = time.time() + 120  # a safety limit: training starts within seconds on an idle machine
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.csv").is_file() and len(read_csv(run / "metrics.csv")) >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    assert "Traceback" not in err and "stopped by SIGTERM after step" in err and "continue with: mae-domains pretrain --resume" in err
    stopped_at = load_checkpoint(run)["step"]
    assert 2 <= stopped_at < STEPS
    assert [int(r["step"]) for r in read_csv(run / "metrics.csv")][-1] == stopped_at
    assert not (run / LOCK_NAME).exists() and not list(run.glob(".*.tmp-*"))
    assert main(["-q", "pretrain", "--resume", str(run)]) == 0
    resumed = load_checkpoint(run)
    assert resumed["step"] == STEPS
    assert_tensors_equal(uninterrupted["model"], resumed["model"])
    assert_optimizer_equal(uninterrupted["optimizer"], resumed["optimizer"])


def signal_after_setup(monkeypatch, sig=signal.SIGTERM):
    """The signal arrives once set-up is done, before step 1 (as a scheduler may send it)."""
    from mae_domains.engine.trainer import Trainer

    real_prepare = Trainer.prepare

    def prepare(self):
        real_prepare(self)
        os.kill(os.getpid(), sig)
    monkeypatch.setattr(Trainer, "prepare", prepare)


def test_sigterm_before_step_1_writes_a_step_0_checkpoint_that_resumes_exactly(archive, uninterrupted, tmp_path,
                                                                              monkeypatch, capsys):
    run = tmp_path / "run"
    signal_after_setup(monkeypatch)
    argv = ["pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run), *MICRO, *SETTINGS,
            "data.num_workers=0"]
    assert main(argv) == PREEMPTED_EXIT_CODE
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"stopped by SIGTERM before step 1 of {STEPS}, nothing trained yet (a scheduler or `kill` asked "
                   f"the run to stop); checkpoint of step 0 written; continue with: mae-domains pretrain --resume {run}")
    assert load_checkpoint(run)["step"] == 0 and not (run / LOCK_NAME).exists()
    monkeypatch.undo()
    assert main(["-q", "pretrain", "--resume", str(run)]) == 0
    assert_tensors_equal(uninterrupted["model"], load_checkpoint(run)["model"])


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_and_says_how_to_continue(archive, uninterrupted, tmp_path,
                                                                                monkeypatch, capsys):
    from mae_image import ImageAdapter

    run = tmp_path / "run"
    real_inputs, calls = ImageAdapter.model_inputs, []

    def ctrl_c_in_step_3(self, batch, device):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_inputs(self, batch, device)
    monkeypatch.setattr(ImageAdapter, "model_inputs", ctrl_c_in_step_3)
    argv = ["pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run), *MICRO, *SETTINGS,
            "data.num_workers=0"]
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"stopped by SIGINT after step 3 of {STEPS} (Ctrl-C); checkpoint of step 3 written; "
                   f"continue with: mae-domains pretrain --resume {run}")
    assert load_checkpoint(run)["step"] == 3 and signal.getsignal(signal.SIGINT) is before  # restored
    monkeypatch.undo()
    assert main(["-q", "pretrain", "--resume", str(run)]) == 0
    assert_tensors_equal(uninterrupted["model"], load_checkpoint(run)["model"])


def test_a_second_ctrl_c_stops_at_once_and_names_the_last_checkpoint():
    from mae_domains.engine.preemption import stopped_summary

    with pytest.raises(KeyboardInterrupt), StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)
    assert stopped_summary("a second Ctrl-C", 37, 30, 100, "runs/x") == (
        "stopped by a second Ctrl-C after step 37 of 100 (Ctrl-C pressed twice stops at once); the step under way "
        "was not saved, the checkpoint is of step 30; continue with: mae-domains pretrain --resume runs/x")
    from types import SimpleNamespace

    from mae_domains.cli import report_stop

    stopped = SimpleNamespace(stopped_by="a second Ctrl-C", steps=37, checkpoint_step=30, total_steps=100, run_dir="x")
    assert report_stop(stopped) == 130
    assert report_stop(SimpleNamespace(**{**vars(stopped), "stopped_by": "a stop signal on another rank"})) == 143


def test_demo_stopped_by_a_signal_does_not_say_done(tmp_path, monkeypatch, capsys):
    signal_after_setup(monkeypatch)
    assert main(["demo", "--out", str(tmp_path / "demo"), "engine.max_steps=2"]) == PREEMPTED_EXIT_CODE
    out, err = capsys.readouterr()
    assert "done:" not in out
    assert f"stopped by SIGTERM before step 1 of 2, nothing trained yet" in err
    assert f"continue with: mae-domains pretrain --resume {tmp_path / 'demo' / 'run'}" in err
