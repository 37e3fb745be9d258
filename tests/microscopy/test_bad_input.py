"""Bad input: clear messages naming the file and the problem; the dataset skips and lists such crops."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mae_domains.data.dataset import ArchiveDataset
from mae_domains.data.sample import BadSampleError
from tests.microscopy.conftest import make_adapter
from tests.microscopy.files import PAINTING, write_cells_ome, write_ome_tiff


def corrupt_page(path, page: int) -> None:
    """Overwrite the compressed bytes of one page with garbage (the header stays readable)."""
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[page].dataoffsets[0], tif.pages[page].databytecounts[0]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write((b"\xff\x00garbage" * (count // 9 + 1))[:count])


def write_bad_archive(folder):
    """Good fields plus one of each kind of bad input; returns the manifest."""
    folder.mkdir(exist_ok=True)
    for i in range(2):
        write_cells_ome(folder / f"good{i}.ome.tif", PAINTING, i, size=32)
    write_cells_ome(folder / "four.ome.tif", PAINTING[:4], 5, size=32)  # the manifest says 5
    zero = write_cells_ome(folder / "zero.ome.tif", PAINTING, 6, size=32)
    zero[2] = 0
    write_ome_tiff(folder / "zero.ome.tif", zero, PAINTING)
    pages = np.stack([np.full((32, 32), 100 + 50 * i, np.uint16) + np.eye(32, dtype=np.uint16) for i in range(5)])
    with tifffile.TiffWriter(folder / "broken_page.tif") as tif:
        for i, name in enumerate(PAINTING):
            tif.write(pages[i], compression="zlib", extratags=[(285, "s", 0, name, True)])
    corrupt_page(folder / "broken_page.tif", 1)
    (folder / "not_a_tiff.tif").write_bytes(b"this is not a TIFF file at all")
    rows = ["path,plate,well,site,perturbation,channels"]
    rows += [f"{name},P1,A0{i + 1},1,DMSO,5" for i, name in enumerate(
        ["good0.ome.tif", "good1.ome.tif", "four.ome.tif", "zero.ome.tif", "broken_page.tif", "not_a_tiff.tif"])]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def by_file(refs, name):
    return next(r for r in refs if r.source.endswith(name))


def test_each_bad_input_gets_a_clear_message(tmp_path, caplog):
    manifest = write_bad_archive(tmp_path)
    adapter = make_adapter(32, sampling="grid")
    refs = adapter.discover([manifest])
    assert len(refs) == 6  # bad fields stay in the list, to be skipped and listed when read
    assert len({r.signature for r in refs}) == 1
    assert "P1/A03/1 will be skipped: has 4 channel(s)" in caplog.text  # listed when found, too
    with pytest.raises(BadSampleError, match=r"has 4 channel\(s\) \['DNA', 'RNA', 'ER', 'AGP'\] but the manifest expects 5"):
        adapter.read(by_file(refs, "four.ome.tif"))
    with pytest.raises(BadSampleError, match=r"channel 'ER' \(index 2\) is all zero") as err:
        adapter.read(by_file(refs, "zero.ome.tif"))
    assert err.value.source.endswith("zero.ome.tif")
    with pytest.raises(BadSampleError, match=r"cannot read channel 'RNA' \(index 1\).*unreadable page"):
        adapter.read(by_file(refs, "broken_page.tif"))
    with pytest.raises(BadSampleError, match="cannot open as TIFF"):
        adapter.read(by_file(refs, "not_a_tiff.tif"))
    assert adapter.read(by_file(refs, "good0.ome.tif")).image.shape == (5, 32, 32)


def test_channel_name_outside_the_vocabulary(tmp_path):
    write_cells_ome(tmp_path / "odd.ome.tif", ["DNA", "Phalloidin"], 0, size=32)
    write_cells_ome(tmp_path / "fine.ome.tif", ["DNA", "ER"], 0, size=32)
    strict = make_adapter(32, unknown_channels="error", foreground=False)
    ref = by_file(strict.discover([tmp_path]), "odd.ome.tif")
    with pytest.raises(BadSampleError, match=r"\['Phalloidin'\] are outside the channel vocabulary"):
        strict.read(ref)
    with pytest.raises(ValueError, match="none of the 1 field.*outside the channel vocabulary"):
        strict.discover([tmp_path / "odd.ome.tif"])
    lenient = make_adapter(32, foreground=False)  # default: the shared fallback code
    ref = by_file(lenient.discover([tmp_path]), "odd.ome.tif")
    assert lenient.read(ref).meta["channel_names"] == ["DNA", "Phalloidin"]


def test_dataset_skips_and_lists_bad_crops(tmp_path):
    manifest = write_bad_archive(tmp_path)
    adapter = make_adapter(32, sampling="grid")
    refs = adapter.discover([manifest])
    dataset = ArchiveDataset(adapter, refs, None, train=True, seed=0,
                             signatures=[adapter.grid_signature(r) for r in refs])
    skipped = []
    for i in range(len(refs)):
        item = dataset[(i, 0)]
        assert item["meta"]["source"].endswith(("good0.ome.tif", "good1.ome.tif"))
        assert item["image"].shape == (5, 32, 32)
        skipped += item["skipped"]
    reasons = {draw[0].rsplit("/", 1)[-1]: draw[1] for draw in skipped}  # (source, reason, ...)
    assert set(reasons) == {"four.ome.tif", "zero.ome.tif", "broken_page.tif", "not_a_tiff.tif"}
    assert "all zero" in reasons["zero.ome.tif"] and "manifest expects 5" in reasons["four.ome.tif"]
