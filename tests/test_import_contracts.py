"""The import contracts of pyproject.toml ([tool.importlinter]) hold: floors run one way, the core never
imports an adapter package, adapters import only the core. The configuration covers every adapter package."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def linter_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def adapter_packages() -> set[str]:
    return {p.name for p in (ROOT / "adapters").iterdir() if (p / "__init__.py").is_file()}


def contract(config: dict, kind: str, name_part: str) -> dict:
    (found,) = [c for c in config["contracts"] if c["type"] == kind and name_part in c["name"]]
    return found


def test_contracts_cover_every_adapter_package():
    config = linter_config()
    packages = adapter_packages()
    assert {"mae_image", "mae_remote_sensing"} <= packages
    missing = {
        "root_packages": packages - set(config["root_packages"]),
        "the core never imports an adapter package": packages - set(
            contract(config, "forbidden", "core never imports")["forbidden_modules"]),
        "adapter packages import only the core": packages - set(
            contract(config, "forbidden", "import only the core")["source_modules"]),
        "adapter packages are independent": packages - set(contract(config, "independence", "adapter")["modules"]),
    }
    missing = {where: sorted(names) for where, names in missing.items() if names}
    assert not missing, f"add these adapter packages to [tool.importlinter] in pyproject.toml: {missing}"


def test_import_contracts_hold():
    """Runs ``lint-imports`` on this checkout; its report (each broken import with file and line) is the
    failure message."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(ROOT / "adapters"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"],  # reads pyproject.toml in cwd
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    report = result.stdout + result.stderr
    assert "Contracts:" in report, report
    assert result.returncode == 0, report
