"""Dependencies declared as imported: every third-party import of ``mae_domains/`` and ``adapters/`` is a
runtime dependency in pyproject.toml, and every runtime dependency is imported somewhere (or listed below
with the reason it is not)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_TREES = (ROOT / "mae_domains", ROOT / "adapters")

# Declared but never imported by our code, on purpose.
USED_WITHOUT_IMPORT = {
    "imagecodecs": "tifffile loads it to decode LZW/JPEG/zstd-compressed TIFF",
    "pylibjpeg": "pydicom loads it as a pixel-data decoding plugin",
    "pylibjpeg-libjpeg": "pydicom loads it (through pylibjpeg) for JPEG baseline/extended/lossless and JPEG-LS",
    "pylibjpeg-openjpeg": "pydicom loads it (through pylibjpeg) for JPEG 2000",
    "pylibjpeg-rle": "pydicom loads it (through pylibjpeg) for RLE Lossless",
    "einops": "MONAI's ViT/UNETR blocks (CT segmentation) import it lazily",
}
# Declared for the adapters that are about to land; remove an entry once its adapter imports it.
FOR_UPCOMING_ADAPTERS: dict[str, str] = {}


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_runtime() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1)) for spec in project["dependencies"]}


def first_party() -> set[str]:
    """Our own top-level packages: mae_domains and every package folder under adapters/."""
    return {"mae_domains"} | {p.name for p in (ROOT / "adapters").iterdir() if (p / "__init__.py").is_file()}


def imported_modules() -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports anywhere in the file, lazy ones too)."""
    found: dict[str, set[str]] = defaultdict(set)
    for name, files in imported_modules_full().items():
        found[name.split(".")[0]] |= files
    return found


def third_party(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    ours = first_party()
    return {m: files for m, files in imports.items()
            if m not in sys.stdlib_module_names and m not in ours and m != "__future__"}


def test_every_third_party_import_is_declared():
    declared = declared_runtime()
    distributions = packages_distributions()
    problems = []
    for module, files in sorted(third_party(imported_modules()).items()):
        providers = {normalize(d) for d in distributions.get(module, [])}
        if not providers:
            problems.append(f"{module}: no installed distribution provides it (imported in {', '.join(sorted(files))})")
        elif not providers & declared:
            problems.append(f"{module} (distribution {' or '.join(sorted(providers))}) is imported in "
                            f"{', '.join(sorted(files))} but not declared in [project] dependencies")
    assert not problems, "\n".join(problems)


def test_every_declared_dependency_is_imported_or_explained():
    declared = declared_runtime()
    distributions = packages_distributions()
    used = {normalize(d) for module in third_party(imported_modules()) for d in distributions.get(module, [])}
    explained = {normalize(n) for n in {**USED_WITHOUT_IMPORT, **FOR_UPCOMING_ADAPTERS}}
    unused = sorted(declared - used - explained)
    assert not unused, (f"declared in pyproject.toml but imported nowhere in mae_domains/ or adapters/: {unused}; "
                        "remove them or explain them in this test")
    stale = sorted(explained & used)
    assert not stale, f"{stale} are imported now: remove them from the lists in {Path(__file__).name}"
    undeclared = sorted(explained - declared)
    assert not undeclared, f"{undeclared} are explained here but no longer declared: remove them from the lists"


def test_the_scan_sees_known_imports():
    """Guard against a scan that silently finds nothing: lazy and aliased imports are seen."""
    imports = third_party(imported_modules())
    assert {"torch", "numpy", "rasterio", "cv2", "sklearn", "zarr"} <= set(imports)
    assert "adapters/mae_remote_sensing/zarr_store.py" in imports["zarr"]  # imported inside functions
    assert not {"mae_domains", "mae_image", "mae_remote_sensing", "os", "__future__"} & set(imports)


# Private modules of a dependency that we may import, with the reason.
PRIVATE_IMPORTS_ALLOWED = {
    "torch._dynamo": "torch.compile's documented configuration and reset (engine/compilation.py)",
}


def test_no_private_modules_of_dependencies_are_imported():
    """A private module (``timm.models._manipulate``) moves between releases; the public name is kept."""
    private = []
    for name, files in imported_modules_full().items():
        top = name.split(".")[0]
        if top not in first_party() and any(part.startswith("_") for part in name.split(".")[1:]):
            if name not in PRIVATE_IMPORTS_ALLOWED:
                private.append(f"{name} in {sorted(files)}")
    assert not private, private


def imported_modules_full() -> dict[str, set[str]]:
    """Full dotted module name -> files importing it."""
    found: dict[str, set[str]] = defaultdict(set)
    for tree in SOURCE_TREES:
        for path in sorted(tree.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found[name].add(str(path.relative_to(ROOT)))
    return found
