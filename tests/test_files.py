"""Finding files: recursive folders, globs, symlinked folders and link loops, each real file once."""

from __future__ import annotations

import os

import pytest

from mae_domains.files import find_files


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_symlink_loop_lists_every_file_once(tmp_path):
    root = tmp_path / "archive"
    for i in range(4):
        touch(root / "a" / f"{i}.png")
    touch(root / "b" / "c" / "x.png")
    os.symlink(root, root / "b" / "c" / "loop")  # b/c/loop -> archive: a cycle
    os.symlink(root / "a", root / "alias")  # the same folder under a second name
    found = find_files([root], ("*.png",))
    assert sorted(p.name for p in found) == ["0.png", "1.png", "2.png", "3.png", "x.png"]
    assert len({os.path.realpath(p) for p in found}) == len(found) == 5
    assert find_files([str(root / "**" / "*.png")]) == find_files([str(root / "**" / "*.png")])
    assert len(find_files([str(root / "**" / "*.png"), root], ("*.png",))) == 5


def test_symlinked_folders_are_followed(tmp_path):
    touch(tmp_path / "elsewhere" / "scan.png")
    root = tmp_path / "archive"
    root.mkdir()
    os.symlink(tmp_path / "elsewhere", root / "linked")
    assert [p.name for p in find_files([root], ("*.png",))] == ["scan.png"]


def test_order_is_sorted_and_patterns_filter(tmp_path):
    for name in ("b/z.png", "a.png", "b/a.png", "zz.png", "notes.txt"):
        touch(tmp_path / name)
    found = find_files([tmp_path], ("*.png",))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.png", "b/a.png", "b/z.png", "zz.png"]
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        find_files([tmp_path / "nothing-here*.png"])


def test_a_link_to_the_file_system_root_is_not_walked(tmp_path):
    """``data/root -> /`` would walk the whole machine (and stop on /proc's unreadable links): it is not
    followed, with a logged reason; checked with a deadline."""
    import subprocess
    import sys

    touch(tmp_path / "archive" / "a" / "scan.png")
    os.symlink("/", tmp_path / "archive" / "root")
    os.symlink(tmp_path, tmp_path / "archive" / "a" / "up")  # the archive's parent: holds the archive too
    code = ("import sys, logging; logging.basicConfig(level=logging.WARNING); from mae_domains.files import find_files; "
            "print([str(p) for p in find_files([sys.argv[1]], ('*.png',))])")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "archive")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str([str(tmp_path / "archive" / "a" / "scan.png")])
    assert f"not following the link {tmp_path / 'archive' / 'root'} -> /: it holds the data folder" in done.stderr
    assert f"not following the link {tmp_path / 'archive' / 'a' / 'up'} -> {tmp_path}" in done.stderr


def test_unreadable_folders_and_entries_are_skipped_with_a_reason(tmp_path, monkeypatch, caplog):
    """Running as root, permissions do not stop reading: the file system's refusal is simulated."""
    import logging

    touch(tmp_path / "archive" / "ok" / "a.png")
    touch(tmp_path / "archive" / "locked" / "b.png")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING):
        found = find_files([tmp_path / "archive"], ("*.png",))
    assert found == [tmp_path / "archive" / "ok" / "a.png"]
    assert f"skipping folder {tmp_path / 'archive' / 'locked'}: Permission denied" in caplog.text


def test_the_walk_stops_at_the_depth_limit(tmp_path, monkeypatch, caplog):
    import logging

    from mae_domains import files

    monkeypatch.setattr(files, "MAX_DEPTH", 3)
    deep = tmp_path / "d1" / "d2" / "d3" / "d4"
    touch(tmp_path / "d1" / "d2" / "d3" / "in.png")
    touch(deep / "too_deep.png")
    with caplog.at_level(logging.WARNING):
        assert [p.name for p in find_files([tmp_path], ("*.png",))] == ["in.png"]
    assert f"not entering {deep}: more than 3 folders deep" in caplog.text
