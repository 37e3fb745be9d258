"""A run folder cannot be destroyed by accident: a new run refuses an existing one (unless --overwrite),
one lock per folder for the run's lifetime (stale locks taken over), dead writers' temp files removed."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mae_domains.cli import main
from mae_domains.engine import pretrain
from mae_domains.engine.run_files import read_csv
from mae_domains.runs.folder import RunFolderError
from mae_domains.runs.lock import LOCK_NAME, RunLock, RunLocked
from tests.engine.conftest import MICRO, load_checkpoint, make_config, write_pngs

RUN = ("engine.batch_size=4", "engine.max_steps=2", "data.num_workers=0", "engine.log_every=1")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    write_pngs(tmp_path / "archive", 12)
    return tmp_path / "archive"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_new_run_into_a_run_folder_is_refused(archive, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(make_config(archive, *RUN), run)
    rows = read_csv(run / "metrics.csv")
    with pytest.raises(RunFolderError, match=r"already holds a run .*--resume .*--overwrite"):
        pretrain(make_config(archive, *RUN, "engine.max_steps=1"), run)
    capsys.readouterr()
    assert main(["pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run), *MICRO, *RUN]) == 2
    err = capsys.readouterr().err
    assert f"{run}: already holds a run" in err and "Traceback" not in err
    assert read_csv(run / "metrics.csv") == rows and load_checkpoint(run)["step"] == 2
    assert not (run / LOCK_NAME).exists()


def test_overwrite_replaces_the_previous_run(archive, tmp_path):
    run = tmp_path / "run"
    pretrain(make_config(archive, *RUN, "engine.figure_every=1"), run)
    assert len(list((run / "figures").iterdir())) == 2
    assert main(["-q", "pretrain", "--adapter", "image", "--data", str(archive), "--out", str(run), *MICRO, *RUN,
                 "engine.max_steps=1", "engine.figure_every=0", "--overwrite"]) == 0
    assert [r["step"] for r in read_csv(run / "metrics.csv")] == ["1"]
    assert load_checkpoint(run)["step"] == 1 and not (run / "figures").exists()


def test_the_lock_is_held_for_the_run_and_refuses_a_second_one(archive, tmp_path):
    run, seen = tmp_path / "run", {}

    def second_run(step: int, row: dict) -> None:
        if step == 1:
            seen["lock"] = json.loads((run / LOCK_NAME).read_text())
            with pytest.raises(RunLocked) as info:
                pretrain(make_config(archive, *RUN), run, resume=True)
            seen["message"] = str(info.value)

    pretrain(make_config(archive, *RUN, "engine.checkpoint_every=1"), run, on_step=second_run)
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["host"] == socket.gethostname()
    assert f"in use by pid {os.getpid()} on host {socket.gethostname()}" in seen["message"]
    assert not (run / LOCK_NAME).exists()  # released at the end


def write_lock(folder: Path, host: str, pid: int, age_s: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"host": host, "pid": pid, "started": "then", "pid_start": None}))
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


def test_stale_locks_are_taken_over_and_live_ones_refused(tmp_path, caplog):
    folder = tmp_path / "run"
    write_lock(folder, socket.gethostname(), dead_pid())
    with caplog.at_level(logging.WARNING), RunLock(folder):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "is no longer running" in caplog.text
    write_lock(folder, "node-17", 4242, age_s=60)  # another host, recent heartbeat: may be alive
    with pytest.raises(RunLocked, match="in use by pid 4242 on host node-17"):
        RunLock(folder).acquire()
    write_lock(folder, "node-17", 4242, age_s=3 * 3600)  # no heartbeat for 3 h
    with caplog.at_level(logging.WARNING), RunLock(folder):
        pass
    assert "has not refreshed it for 180 min" in caplog.text


@pytest.mark.slow
def test_temp_files_of_killed_writers_are_removed_on_resume(archive, tmp_path):
    """A writer killed (SIGKILL) while writing a checkpoint leaves .checkpoint.pt.tmp-PID; the next start
    removes it, and keeps a file that is not a temp file of a run file."""
    run = tmp_path / "run"
    pretrain(make_config(archive, *RUN), run)
    writer = ("import sys, time; from pathlib import Path; from mae_domains.engine.checkpoint import save_atomic\n"
              "import torch; real = torch.save\n"
              "def slow(obj, fh, *a, **k): fh.write(b'x' * 2**20); fh.flush(); time.sleep(60)\n"
              "torch.save = slow; save_atomic({}, Path(sys.argv[1]) / 'checkpoint.pt')")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(run)])
    temp = run / f".checkpoint.pt.tmp-{proc.pid}"
    deadline = time.time() + 120  # the writer imports torch first: slow on a loaded machine
    while not (temp.is_file() and temp.stat().st_size >= 2**20) and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert temp.stat().st_size >= 2**20
    (run / ".notes.tmp-1").write_text("not ours")
    pretrain(make_config(archive, *RUN, "engine.max_steps=3"), run, resume=True)
    assert not temp.exists() and (run / ".notes.tmp-1").exists()
    assert load_checkpoint(run)["step"] == 3


def test_two_takeovers_of_one_stale_lock_cannot_both_win(tmp_path, monkeypatch):
    """B judges the dead pid's lock stale; before B acts, A takes it over. B must then find A's live lock
    and refuse, not move it aside and create its own (both would write the run)."""
    from mae_domains.runs import lock as lock_module

    folder = tmp_path / "run"
    write_lock(folder, socket.gethostname(), dead_pid())
    first, second = RunLock(folder), RunLock(folder)
    first_lock_inode = []
    real_stale_reason = lock_module.stale_reason

    def a_takes_over_after_b_judged(owner, age_s, stale_after):
        reason = real_stale_reason(owner, age_s, stale_after)
        if not first.held:  # B has just judged the dead lock stale: A now runs its whole takeover
            monkeypatch.setattr(lock_module, "stale_reason", real_stale_reason)
            first.acquire()
            first_lock_inode.append((folder / LOCK_NAME).stat().st_ino)
        return reason
    monkeypatch.setattr(lock_module, "stale_reason", a_takes_over_after_b_judged)
    with pytest.raises(RunLocked, match=f"in use by pid {os.getpid()} on host"):
        second.acquire()
    assert first.held and not second.held
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert (folder / LOCK_NAME).stat().st_ino == first_lock_inode[0]  # A's lock, not moved aside
    first.release()
    assert not (folder / LOCK_NAME).exists()
