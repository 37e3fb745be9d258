"""Groups of dependent test samples (mae_domains.evaluation.sample_groups)."""

import pytest

from mae_domains.evaluation.sample_groups import read_groups, write_groups


def test_sample_ids_find_their_group_by_path_or_file_name_with_draw_suffixes(tmp_path):
    write_groups(tmp_path / "groups.csv", "slice", [
        ("crops/a/tumour/a_z001_y000.png", "a_z001"), ("crops/a/no_tumour/a_z002_y000.png", "a_z002"),
        ("chips/test/forest/r01_c02.tif", "r0_c1"), ("chips/train/forest/r01_c02.tif", "r0_c1-train")])
    groups = read_groups(tmp_path / "groups.csv")
    assert groups.unit == "slice"
    ids = ["a_z002_y000.png", "a_z001_y000.png/crop3", "a_z001_y000.png#frame=2",
           f"{tmp_path}/chips/test/forest/r01_c02.tif#0", "chips/train/forest/r01_c02.tif",
           "data/real/chips/test/forest/r01_c02.tif"]  # a path ending with the row's path
    assert groups.of(ids).tolist() == ["a_z002", "a_z001", "a_z001", "r0_c1", "r0_c1-train", "r0_c1"]
    with pytest.raises(ValueError, match="0 rows"):  # a path that does not end with the row's
        groups.of(["chips/val/forest/r01_c02.tif"])
    with pytest.raises(ValueError, match="'r01_c02.tif': 2 rows"):  # a bare name in two folders
        groups.of(["r01_c02.tif"])
    with pytest.raises(ValueError, match="'b_z001.png': 0 rows"):
        groups.of(["b_z001.png"])
    (tmp_path / "bad.csv").write_text("file,slice\nx.png,1\n")
    with pytest.raises(ValueError, match="header path,<unit>"):
        read_groups(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("path,slice\nx.png,1\nx.png,2\n")
    with pytest.raises(ValueError, match="x.png listed twice"):
        read_groups(tmp_path / "twice.csv")
