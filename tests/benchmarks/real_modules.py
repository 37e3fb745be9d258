"""Import the scripts of ``benchmarks/real`` (a folder of scripts, not a package) by file name."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "benchmarks" / "real"


def real_module(name: str):
    if str(REAL) not in sys.path:
        sys.path.insert(0, str(REAL))
    return importlib.import_module(name)
