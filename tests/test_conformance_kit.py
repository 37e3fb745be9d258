"""The conformance kit fails a broken adapter with a message, also under ``python -O`` (no bare asserts)."""

import subprocess
import sys
import textwrap

import pytest

from mae_domains.testing import ConformanceError, assert_adapter_conforms, check_adapter
from tests.fixtures.heightmap_plugin.mae_heightmap.adapter import HeightmapAdapter


class UnseededHeightmap(HeightmapAdapter):
    """Augments with the global RNG instead of ``seed``: the same seed gives different crops."""

    name = "terrain.unseeded"

    def transform(self, sample, seed, train, stats):
        import numpy as np

        return super().transform(sample, int(np.random.default_rng().integers(1 << 30)), train, stats)


def test_broken_adapter_fails_with_named_check():
    report = check_adapter(UnseededHeightmap, only=["seeded transform"])
    assert not report.passed
    assert report.results[0].detail == "ConformanceError: the same seed gave different augmentations"
    with pytest.raises(ConformanceError, match="FAIL  seeded transform"):
        assert_adapter_conforms(UnseededHeightmap, )


def test_checks_hold_under_optimized_python():
    script = textwrap.dedent("""
        from mae_domains.testing import check_adapter
        from tests.test_conformance_kit import UnseededHeightmap
        report = check_adapter(UnseededHeightmap, only=["seeded transform", "identity"])
        print([(r.name, r.passed) for r in report.results])
    """)
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('identity', True), ('seeded transform', False)]"
