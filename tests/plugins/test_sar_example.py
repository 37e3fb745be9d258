"""The worked example of docs/plugins.md: a two-channel SAR amplitude plugin, read from real GeoTIFFs,
checked with the conformance kit and pretrained; its run records the two channels the model reads."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from mae_domains.config import load_config
from mae_domains.engine import pretrain
from mae_domains.engine.checkpoint import load_resume_state
from mae_domains.testing import assert_adapter_conforms

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sar_plugin"
MICRO = ["model.preset=micro", "model.img_size=32", "model.patch_size=8", "engine.device=cpu", "engine.precision=fp32"]


@pytest.fixture
def sar_adapter(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from mae_sar.adapter import SarAmplitudeAdapter

    return SarAmplitudeAdapter


def write_grd(path: Path, amplitude: np.ndarray) -> Path:
    """A Sentinel-1 GRD-like GeoTIFF: uint16 amplitude (VV, VH), UTM 33N, 10 m pixels, nodata 0."""
    with rasterio.open(path, "w", driver="GTiff", width=amplitude.shape[2], height=amplitude.shape[1], count=2,
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(500000, 5300000, 10, 10),
                       nodata=0) as dst:
        dst.write(amplitude.astype(np.uint16))
        dst.set_band_description(1, "VV")
        dst.set_band_description(2, "VH")
    return path


def test_reads_amplitude_as_decibels_with_nodata_masked(sar_adapter, tmp_path):
    amplitude = np.full((2, 40, 40), 100, np.uint16)
    amplitude[1] = 10
    amplitude[:, :, :3] = 0  # outside the swath
    sample = sar_adapter().read(write_grd(tmp_path / "s1.tif", amplitude))
    assert sample.image.dtype == np.float32 and sample.image.shape == (2, 40, 40)
    np.testing.assert_allclose(sample.image[:, 5, 5], [40.0, 20.0])  # 20 log10(100), 20 log10(10) dB
    assert not sample.valid[:, :3].any() and sample.valid[:, 3:].all()
    assert sample.meta["channel_names"] == ["VV", "VH"] and sample.meta["gsd"] == 10.0


def test_unreadable_file_is_a_bad_sample(sar_adapter, tmp_path):
    from mae_domains.data.sample import BadSampleError

    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(BadSampleError, match="broken.tif: not a readable GeoTIFF"):
        sar_adapter().read(bad)


def test_conformance_kit_passes(sar_adapter):
    report = assert_adapter_conforms(sar_adapter)
    assert len(report.results) == 10


def test_pretraining_records_the_two_channels_the_model_reads(sar_adapter, tmp_path):
    rng = np.random.default_rng(0)
    archive = tmp_path / "grd"
    archive.mkdir()
    for i in range(4):
        write_grd(archive / f"scene{i}.tif", np.sqrt(rng.gamma(4.0, 2500.0, size=(2, 40, 40))) + 1)
    config = load_config(None, ["adapter=sar.amplitude", *MICRO, f"data.sources=[{archive}]", "engine.batch_size=2",
                                "engine.max_steps=2", "data.num_workers=0"])
    assert config.model.in_chans == 3  # the default, which this adapter's embedding does not use
    run = tmp_path / "run"
    pretrain(config, run, adapter=sar_adapter())
    recorded = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert recorded["in_chans"] == 2
    assert (recorded["decoder_embed_dim"], recorded["decoder_depth"], recorded["decoder_num_heads"]) == (32, 1, 4)
    assert load_resume_state(run)["config"]["model"]["in_chans"] == 2
    stats = yaml.safe_load((run / "stats.json").read_text())
    assert stats["channel_names"] == ["VV", "VH"] and 30 < stats["mean"][0] < 45  # dB, not amplitude


def test_the_guide_shows_the_tested_code():
    """Every method the plugin guide prints is the example's code, line for line."""
    import re

    guide = (EXAMPLE.parents[1] / "plugins.md").read_text()
    source = {line.strip() for line in (EXAMPLE / "mae_sar" / "adapter.py").read_text().splitlines()}
    methods = [block for block in re.findall(r"```python\n(.*?)```", guide, re.S) if block.startswith("    def ")]
    assert len(methods) == 3  # read, transform, build_embedding
    for block in methods:
        missing = [line for line in block.splitlines() if line.strip() and line.strip() not in source]
        assert not missing, missing
