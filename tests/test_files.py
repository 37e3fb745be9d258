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
