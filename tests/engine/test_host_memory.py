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

# Mallocs, touches and frees 64 MiB and 16 MiB five times through the C library (what the setting
# governs); prints the minor page faults of each round. 64 MiB is above glibc's largest mmap threshold, so by
# default every round maps fresh pages. (Through torch the outcome also depends on where torch's small
# bookkeeping objects land next to the buffer, which varies between builds and machines.)
FAULTS_PER_ROUND = textwrap.dedent("""
    import ctypes, resource, sys
    from mae_domains.host_memory import retain_freed_host_memory
    if sys.argv[1] == "retain":
        assert retain_freed_host_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    def touch_and_free(nbytes):
        block = libc.malloc(nbytes)
        ctypes.memset(block, 1, nbytes)
        libc.free(block)
    counts = []
    for _ in range(5):
        before = faults()
        touch_and_free(64 * 2**20)
        touch_and_free(16 * 2**20)
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
