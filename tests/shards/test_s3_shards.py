"""Shards in an S3 bucket (``pretrain --data s3://...``) against moto's S3 server on localhost: the batches
of the local folder, a shard downloaded only when one of its samples is read, and an unreachable endpoint
or a missing bucket as one line naming the URL."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

import mae_domains.shards.archive as archive_module
from mae_domains.cli import main
from mae_domains.shards import prepare_archive
from tests.engine.conftest import MICRO, make_config, write_pngs
from tests.shards.test_prepared_archive import batches
from tests.shards.test_remote_shards import cached_shards

server_module = pytest.importorskip("moto.server", reason="moto (an S3 server for tests) is not installed: "
                                                           "pip install -e '.[test]'")
pytestmark = pytest.mark.slow  # starting the server and the S3 clients takes a few seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server; credentials and endpoint as MosaicML Streaming's S3 downloader reads them."""
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(archive_module, "_OPEN", {})
    import boto3

    yield boto3.client("s3", endpoint_url=endpoint)
    server.stop()


def upload(client, folder: Path, bucket: str, prefix: str) -> None:
    client.create_bucket(Bucket=bucket)
    for path in folder.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


def test_pretrain_from_s3_gives_the_local_batches(s3, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    write_pngs(archive, 16, seed=2)
    shards = tmp_path / "shards"
    prepare_archive(make_config(archive), shards, workers=1, progress=False, part_size=4)
    upload(s3, shards, "scans", "prepared/pngs")
    monkeypatch.setenv("MAE_DOMAINS_SHARD_CACHE", str(tmp_path / "cache"))
    local = batches(make_config(shards), 1)
    remote = batches(make_config("s3://scans/prepared/pngs"), 1)
    assert np.array_equal(local[0]["image"].numpy(), remote[0]["image"].numpy())
    assert len(cached_shards(tmp_path / "cache")) == len({int(i) // 4 for i in remote[0]["index"]})
    assert main(["-q", "pretrain", "--adapter", "image", "--data", "s3://scans/prepared/pngs", "--out",
                 str(tmp_path / "run"), "engine.max_steps=2", "engine.batch_size=4", *MICRO]) == 0


@pytest.mark.parametrize("case", ["no bucket", "unreachable"])
def test_s3_errors_are_one_line_naming_the_url(s3, tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("MAE_DOMAINS_SHARD_CACHE", str(tmp_path / "cache"))
    if case == "unreachable":
        monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    url = "s3://missing-bucket/shards"
    assert main(["-q", "pretrain", "--adapter", "image", "--data", url, "--out", str(tmp_path / "run"),
                 "engine.max_steps=1", *MICRO]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {url}/mae_domains_shards.json: cannot download") and "\n" not in err
