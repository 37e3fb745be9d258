"""Adapters, protocols and converters come from entry-point groups only, discovered once per process;
the built-ins are registered in pyproject.toml like any plugin's, and one listing shows all three."""

import importlib
import pkgutil
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from mae_domains import entry_point_groups, registry
from mae_domains.conversion import registry as conversion_registry
from mae_domains.conversion.registry import Converter, converters
from mae_domains.protocols import EvaluationProtocol, get_protocol, protocol_names, unregister_protocol
from mae_domains.evaluation.knn import KnnProtocol

PACKAGES = ("mae_domains.evaluation", "mae_domains.conversion", "mae_image", "mae_remote_sensing", "mae_medical",
            "mae_microscopy")


class SlopeProtocol(KnnProtocol):
    name = "terrain.slope_knn"


class ImpostorKnn(KnnProtocol):
    name = "knn"


def all_modules():
    for package in PACKAGES:
        root = importlib.import_module(package)
        yield root
        for info in pkgutil.iter_modules(root.__path__, package + "."):
            yield importlib.import_module(info.name)


def test_every_protocol_and_converter_in_the_code_is_registered_by_entry_point():
    classes = {obj for module in all_modules() for obj in vars(module).values()
               if isinstance(obj, type) and issubclass(obj, EvaluationProtocol) and obj.name
               and obj.__module__ == module.__name__}
    assert {cls.name for cls in classes} == set(protocol_names())
    objects = {id(obj): obj for module in all_modules() for obj in vars(module).values() if isinstance(obj, Converter)}
    assert {(c.family, c.adapters) for c in objects.values()} == {(c.family, c.adapters) for c in converters()}
    assert len(converters()) == 10


def test_registration_needs_no_import_of_the_defining_packages():
    script = ("import sys; from mae_domains.protocols import get_protocol; from mae_domains.conversion import "
              "known_families; print(type(get_protocol('microscopy.chammi')).__name__, "
              "'satmae_group' in known_families(), 'mae_microscopy.protocols' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["ChammiProtocol", "True", "True"], done.stderr


@pytest.fixture
def fake_groups(monkeypatch):
    """Entry points of every group faked from ``{group: [(name, value)]}``; discovery counted and reset."""
    calls = []

    def install(points):
        eps = [EntryPoint(name, value, group) for group, pairs in points.items() for name, value in pairs]

        def fake(group):
            calls.append(group)
            return [e for e in eps if e.group == group]

        monkeypatch.setattr(entry_point_groups, "entry_points", fake)
        registry.forget_discovered_plugins()
        return calls

    yield install
    registry.forget_discovered_plugins()
    for name in ("terrain.slope_knn",):
        unregister_protocol(name)


def test_plugin_protocols_are_found_once_and_bad_ones_skipped(fake_groups):
    calls = fake_groups({entry_point_groups.PROTOCOLS: [
        ("knn", "mae_domains.evaluation.knn:KnnProtocol"),
        ("aaa", "tests.test_plugin_registration:ImpostorKnn"),
        ("terrain.slope_knn", "tests.test_plugin_registration:SlopeProtocol"),
        ("not.a.protocol", "tests.test_plugin_registration:all_modules"),
    ]})
    with pytest.warns(UserWarning) as caught:
        assert type(get_protocol("terrain.slope_knn")) is SlopeProtocol
    messages = "\n".join(str(w.message) for w in caught)
    assert "not.a.protocol" in messages and "is not an EvaluationProtocol subclass" in messages
    assert "takes the name 'knn'" in messages
    assert type(get_protocol("knn")) is KnnProtocol  # a plugin never replaces a built-in
    get_protocol("terrain.slope_knn")
    protocol_names()
    assert calls.count(entry_point_groups.PROTOCOLS) == 1  # discovered once, however often asked


def test_plugin_converters_are_registered_from_their_entry_points(fake_groups, monkeypatch):
    monkeypatch.setattr(conversion_registry, "_CONVERTERS", [])
    monkeypatch.setattr(conversion_registry, "_LOADED_ENTRIES", set())
    fake_groups({entry_point_groups.CONVERTERS: [
        ("mae", "mae_domains.conversion.mae_family:MAE_CONVERTER"),
        ("broken", "no_such_module_xyz:CONVERTER"),
    ]})
    with pytest.warns(UserWarning, match="converter plugin broken .* failed to import"):
        assert conversion_registry.known_families() == ["mae"]


def test_one_listing_of_adapters_protocols_and_converters():
    done = subprocess.run([sys.executable, "-m", "mae_domains.cli", "plugins"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    sections = [line for line in out.splitlines() if not line.startswith(" ")]
    assert sections == ["adapters:", "protocols:", "converters (pretrain --init FAMILY:PATH):"]
    assert "  medical.ct " in out
    assert "microscopy.chammi" in out and "[mae_microscopy.protocols:ChammiProtocol]" in out
    assert "prithvi" in out and "into remote_sensing.temporal: Prithvi-100M" in out


def test_the_quick_listing_names_protocols_and_converters_by_entry_point():
    done = subprocess.run([sys.executable, "-m", "mae_domains.cli", "adapters"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    sections = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert sections[:3] == ["adapters:", "protocols:", "converters (pretrain --init FAMILY:PATH):"]
    assert "  microscopy.chammi" in done.stdout and "[mae_microscopy.protocols:ChammiProtocol]" in done.stdout
    assert "  remote_sensing.prithvi" in done.stdout
