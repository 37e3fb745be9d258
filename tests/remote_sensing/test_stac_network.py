"""Network STAC sources fail fast and local hrefs stay inside the catalog: a host that accepts the
connection and never answers ends the run in one line naming the document or asset (tested against a
loopback server, with a deadline); ``../`` hrefs leaving the catalog's folder are refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pystac
import pytest

from mae_remote_sensing.geotiff import ReadSettings
from mae_remote_sensing.network import StacSourceError, gdal_network_config
from mae_remote_sensing.stac import read_stac_items
from tests.remote_sensing.conftest import make_adapter
from tests.remote_sensing.test_stac import make_item, save_item

FAST = ("data.options.network_timeout=1", "data.options.network_connect_timeout=1", "data.options.network_retries=0")


@pytest.fixture
def silent_host():
    """``http://127.0.0.1:PORT``: accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept_forever():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except socket.timeout:
                continue
    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def run_inspect(path: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mae_domains.cli", "inspect", "--adapter", "remote_sensing.multispectral",
                           "--out", str(tmp_path / "out"), str(path), "model.img_size=32", *options],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    done.seconds = time.monotonic() - start
    return done


@pytest.mark.slow  # a fresh CLI process (about 20 s to import), with a deadline
def test_a_catalog_link_to_a_silent_host_fails_fast_naming_the_link(silent_host, tmp_path):
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": "root", "description": "one remote child",
               "links": [{"rel": "child", "href": f"{silent_host}/child/catalog.json", "type": "application/json"}]}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    done = run_inspect(path, tmp_path, *FAST)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert f"STAC document {silent_host}/child/catalog.json: no answer" in last and "network_timeout" in last
    assert "Traceback" not in done.stderr and done.seconds < 60


@pytest.mark.slow  # a fresh CLI process (about 20 s to import), with a deadline
def test_an_asset_on_a_silent_host_fails_fast_naming_the_asset(silent_host, tmp_path):
    item = make_item(tmp_path / "item")
    item.assets["B04"].href = f"{silent_host}/tiles/B04.tif"
    path = save_item(item, tmp_path / "item" / "item.json")
    done = run_inspect(path, tmp_path, *FAST, 'data.options.bands=["B3","B4","B8"]',
                       'data.options.groups=[["B3","B4","B8"]]')
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{silent_host}/tiles/B04.tif: cannot read the remote raster" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and done.seconds < 60


def test_network_limits_are_options_given_to_gdal_and_pystac(monkeypatch):
    for key in ("GDAL_HTTP_TIMEOUT", "GDAL_HTTP_CONNECTTIMEOUT", "GDAL_HTTP_MAX_RETRY"):
        monkeypatch.delenv(key, raising=False)
    make_adapter("multispectral", img_size=32, network_timeout=7, network_connect_timeout=3, network_retries=1)
    assert (os.environ["GDAL_HTTP_TIMEOUT"], os.environ["GDAL_HTTP_CONNECTTIMEOUT"], os.environ["GDAL_HTTP_MAX_RETRY"]) == (
        "7", "3", "1")
    assert gdal_network_config(0.2, 0.2, 0)["GDAL_HTTP_TIMEOUT"] == "1"  # GDAL counts whole seconds
    with pytest.raises(ValueError, match="network_timeout and network_connect_timeout must be positive"):
        make_adapter("multispectral", img_size=32, network_timeout=0)


def test_relative_hrefs_leaving_the_catalog_folder_are_refused(tmp_path):
    make_item(tmp_path / "outside")  # COGs outside the catalog's folder
    item = make_item(tmp_path / "catalog" / "item")
    item.assets["B04"].href = "../../outside/B04.tif"
    path = save_item(item, tmp_path / "catalog" / "item" / "item.json")
    adapter = make_adapter("multispectral", img_size=32, bands=["B3", "B4", "B8"], groups=[["B3", "B4", "B8"]])
    with pytest.raises(ValueError, match=f"asset 'B04' file {tmp_path / 'outside' / 'B04.tif'} is outside the catalog "
                                         f"root {tmp_path / 'catalog' / 'item'}: refused"):
        adapter.discover([str(path)])
    allowed = make_adapter("multispectral", img_size=32, bands=["B3", "B4", "B8"], groups=[["B3", "B4", "B8"]],
                           stac_confine_hrefs=False)
    assert allowed.discover([str(path)])

    (tmp_path / "elsewhere").mkdir()
    child = pystac.Catalog("child", "outside the root")
    child.normalize_hrefs(str(tmp_path / "elsewhere"))
    child.save(pystac.CatalogType.SELF_CONTAINED)
    root = {"type": "Catalog", "stac_version": "1.0.0", "id": "root", "description": "escapes",
            "links": [{"rel": "child", "href": "../elsewhere/catalog.json", "type": "application/json"}]}
    (tmp_path / "catalog" / "catalog.json").write_text(json.dumps(root))
    with pytest.raises(StacSourceError, match=f"STAC document {tmp_path / 'elsewhere' / 'catalog.json'} is outside"):
        read_stac_items(tmp_path / "catalog" / "catalog.json", ReadSettings())
    assert read_stac_items(tmp_path / "catalog" / "catalog.json", ReadSettings(stac_confine_hrefs=False)) == []
