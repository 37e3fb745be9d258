"""What the distribution declares: the license file matching pyproject's SPDX id, the typing marker, the
recipes as package data, and the optional installs for what is used when present."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_is_the_apache_2_license_that_pyproject_declares():
    assert PROJECT["project"]["license"] == "Apache-2.0"
    assert PROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text


def test_package_data_holds_the_typing_marker_and_the_recipes():
    data = PROJECT["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["mae_domains"] and (ROOT / "mae_domains" / "py.typed").is_file()
    assert data["mae_domains.recipes"] == ["*.yaml"]
    assert (ROOT / "mae_domains" / "recipes").resolve() == (ROOT / "configs").resolve()


def test_optional_installs_for_tensorboard_and_the_hub():
    extras = PROJECT["project"]["optional-dependencies"]
    assert [s.split(">")[0] for s in extras["tensorboard"]] == ["tensorboard"]
    assert [s.split(">")[0] for s in extras["hub"]] == ["huggingface_hub"]
