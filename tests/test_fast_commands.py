"""Listing adapters, ``--help`` and config or argument errors answer without importing torch or any adapter
package (their import takes seconds); ``adapters NAME`` imports that one adapter to print its options.
Timings are in ``benchmarks/bench_cli_startup.py``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mae_domains.adapter_listing import list_adapters
from mae_domains.cli import main
from mae_domains.registry import discover_adapters

HEAVY = ("torch", "monai", "timm", "rasterio", "mae_image", "mae_medical", "mae_remote_sensing", "mae_microscopy")

# runs the command in a fresh interpreter and reports its exit code and which heavy packages it loaded
PROBE = """
import json, sys
from mae_domains.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as done:
    code = done.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"code": code, "heavy": heavy}))
"""


def probe(argv: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)], capture_output=True,
                            text=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv,code", [
    (["adapters"], 0),
    (["--help"], 0),
    (["pretrain", "--help"], 0),
    (["recipes"], 0),
    (["config", "show", "--config", "medical_ct_vit_base"], 0),
    (["pretrain", "--config", "no_such_recipe", "--data", "."], 2),
    (["pretrain", "--adapter", "image", "--data", ".", "model.presett=tiny"], 2),
    (["pretrain", "--data", "."], 2),
    (["pretrain", "--bogus-flag"], 2),
    (["adapters", "no.such.adapter"], 2),
])
def test_command_answers_without_torch_or_adapters(argv, code):
    found = probe(argv)
    assert found["code"] == code
    assert found["heavy"] == [], f"{argv} imported {found['heavy']}"


def test_listing_from_source_matches_the_imported_adapters():
    imported = discover_adapters()
    listed = list_adapters()
    assert [e.name for e in listed] == sorted(imported)
    for entry in listed:
        cls = imported[entry.name]
        assert (entry.summary, entry.api_version) == (cls.summary, cls.api_version)


def test_adapters_lists_names_and_summaries(capsys):
    assert main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert "medical.ct " in out and "api 1.0" in out and "3D MAE on 16^3 cubes" in out
    assert "mae-domains adapters NAME" in out


def test_adapters_name_prints_the_recipe_and_files(capsys):
    assert main(["adapters", "medical.xray"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("medical.xray (api 1.0): Chest X-ray")
    assert "recipes: medical_xray_vit_base, medical_xray_vit_small" in out and "*.dcm" in out
    assert "mask: ratio 0.9, random" in out


@pytest.mark.parametrize("name", sorted(discover_adapters()))
def test_adapters_name_prints_each_option_with_default_and_meaning(name, capsys):
    assert main(["adapters", name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "options (data.options.NAME=VALUE):" in lines
    cls = discover_adapters()[name]
    assert set(cls.option_help) == set(cls.option_defaults)
    for key, default in cls.option_defaults.items():
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [key])
        assert lines[row].split(None, 1)[1].strip() == json.dumps(default)
        assert lines[row + 1].strip() == cls.option_help[key]
