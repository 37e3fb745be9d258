"""A full disk says so in one line (where, and which checkpoint is intact), before writing when the free
space is too small, and an unwritable run folder is reported before training starts."""

from __future__ import annotations

import errno
import pathlib
import shutil
from collections import namedtuple

import pytest
import torch

import mae_domains.engine.disk as disk_module
from mae_domains.cli import main
from mae_domains.engine import pretrain
from mae_domains.engine.disk import DiskFull
from mae_domains.runs.folder import RunFolderError

from .conftest import MICRO, load_checkpoint, make_config

RUN = ("engine.batch_size=4", "engine.max_steps=6", "data.num_workers=0", "engine.checkpoint_every=2")
Usage = namedtuple("Usage", "total used free")


def full_from_save(n: int, real_save=torch.save):
    """A torch.save whose ``n``-th call writes a little, then fails as a full disk does."""
    calls = []

    def save(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, fh, *args, **kwargs)

    return save


def test_disk_full_during_a_write_names_the_intact_checkpoint(png_archive, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", full_from_save(2))
    code = main(["pretrain", "--adapter", "image", "--data", str(png_archive), "--out", str(run), *MICRO, *RUN])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"disk full: cannot write the checkpoint of step 4 in {run}" in err
    assert f"the last good checkpoint (step 2) is intact in {run / 'checkpoint.pt'}" in err
    assert load_checkpoint(run)["step"] == 2
    assert not list(run.glob(".checkpoint.pt.tmp-*"))


def test_free_space_is_checked_before_writing(png_archive, tmp_path, monkeypatch):
    """Less free space than the checkpoint needs: stop before the write, so the disk is not filled up."""
    saves, real_save = [], torch.save
    monkeypatch.setattr(torch, "save", lambda *a, **k: (saves.append(1), real_save(*a, **k))[1])
    real_usage = shutil.disk_usage

    def usage(path):
        free = 10_000 if load_step(tmp_path / "run") == 2 else real_usage(path).free
        return Usage(2**40, 2**40 - free, free)

    monkeypatch.setattr(disk_module.shutil, "disk_usage", usage)
    with pytest.raises(DiskFull, match=r"disk full: .*step 4 .*\(0\.0 MB free, about .* MB needed\); the last "
                                       r"good checkpoint \(step 2\) is intact"):
        pretrain(make_config(png_archive, *RUN), tmp_path / "run")
    assert len(saves) == 1 and load_checkpoint(tmp_path / "run")["step"] == 2


def load_step(run):
    return load_checkpoint(run)["step"] if (run / "checkpoint.pt").is_file() else None


def test_no_room_for_a_checkpoint_is_reported_before_training(png_archive, tmp_path, monkeypatch):
    monkeypatch.setattr(disk_module.shutil, "disk_usage", lambda path: Usage(2**40, 2**40 - 4096, 4096))
    steps = []
    with pytest.raises(DiskFull, match="no checkpoint was written yet"):
        pretrain(make_config(png_archive, *RUN), tmp_path / "run", on_step=lambda s, r: steps.append(s))
    assert steps == [] and not (tmp_path / "run" / "config.yaml").exists()


def test_unwritable_run_folder_is_reported_before_training(png_archive, tmp_path, monkeypatch, capsys):
    """Writes into the folder fail as on a read-only mount (root ignores permission bits, so the file
    system's refusal is simulated)."""
    run = tmp_path / "run"
    run.mkdir()
    real_write = pathlib.Path.write_text

    def refuse(self, *args, **kwargs):
        if self.parent == run:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", refuse)
    steps = []
    with pytest.raises(RunFolderError, match=f"{run}: cannot write in the run folder \\(Permission denied\\)"):
        pretrain(make_config(png_archive, *RUN), run, on_step=lambda s, r: steps.append(s))
    assert steps == [] and list(run.iterdir()) == []
    # a run folder below a file cannot even be created
    (tmp_path / "file").write_text("x")
    capsys.readouterr()
    assert main(["pretrain", "--adapter", "image", "--data", str(png_archive), "--out", str(tmp_path / "file" / "run"),
                 *MICRO, *RUN]) == 2
    assert "cannot write in the run folder" in capsys.readouterr().err
