"""``engine.retain_host_memory``: freed buffers are reused instead of faulted in again at every step."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

import mae_domains.host_memory as host_memory
import mae_domains.engine.trainer as trainer_module
from mae_domains.engine.trainer import Trainer

from .conftest import make_config

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocates, touches and frees a 64 MiB and a 16 MiB tensor five times; prints the minor page faults of
# each round. 64 MiB is above glibc's largest mmap threshold, so by default every round maps fresh pages.
FAULTS_PER_ROUND = textwrap.dedent("""
    import resource, sys, torch
    from mae_domains.host_memory import retain_freed_host_memory
    if sys.argv[1] == "retain":
        assert retain_freed_host_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    counts = []
    for _ in range(5):
        before = faults()
        big = torch.empty(16 * 2**20)  # 64 MiB of fp32
        big.fill_(1.0)
        del big
        small = torch.empty(4 * 2**20)
        small.fill_(1.0)
        del small
        counts.append(faults() - before)
    print(*counts)
""")


def faults_per_round(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_ROUND, mode], capture_output=True, text=True,
                         check=True, timeout=120)
    return [int(n) for n in out.stdout.split()]


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_retained_memory_is_reused_without_page_faults():
    released = faults_per_round("release")
    retained = faults_per_round("retain")
    pages = 16 * 2**20 * 4 // 4096
    assert min(released[2:]) > pages // 2  # every round maps the 64 MiB afresh
    assert max(retained[2:]) < pages // 100  # the freed memory is reused


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda name: pytest.fail("mallopt must not be called"))
    assert host_memory.retain_freed_host_memory() is False


@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_trainer_applies_the_setting(monkeypatch, png_archive, tmp_path, setting):
    calls = []
    monkeypatch.setattr(trainer_module, "retain_freed_host_memory", lambda: calls.append(1) or True)
    config = make_config(png_archive, "engine.max_steps=1", "engine.batch_size=4",
                         f"engine.retain_host_memory={setting}")
    trainer = Trainer(config, tmp_path / "run")
    try:
        trainer.prepare()
    finally:
        trainer.close()
    assert len(calls) == (1 if setting == "true" else 0)
