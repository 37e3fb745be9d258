"""Conformance kit for adapter authors: ``check_adapter(MyAdapter)`` from your own pytest suite.

    from mae_domains.testing import assert_adapter_conforms
    def test_my_adapter():
        assert_adapter_conforms(MyAdapter)
"""

from mae_domains.testing.conformance import (
    CHECKS,
    ConformanceError,
    ConformanceReport,
    assert_adapter_conforms,
    check_adapter,
    tiny_config,
)

__all__ = ["CHECKS", "ConformanceError", "ConformanceReport", "assert_adapter_conforms", "check_adapter", "tiny_config"]
