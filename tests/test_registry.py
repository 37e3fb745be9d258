"""Plugin discovery: broken, incompatible and duplicate plugins warn and are skipped."""

from importlib.metadata import EntryPoint

import pytest

from mae_domains import entry_point_groups, registry
from mae_domains.adapter_api import Adapter
from mae_image.adapter import ImageAdapter


class FutureAdapter(ImageAdapter):
    name = "future.kind"
    api_version = "2.0"


class CloneAdapter(ImageAdapter):
    name = "image"


@pytest.fixture(autouse=True)
def fresh_discovery():
    """Each test discovers the (possibly faked) entry points anew, and leaves the real ones behind."""
    registry.forget_discovered_plugins()
    yield
    registry.forget_discovered_plugins()


def fake_entry_points(monkeypatch, points, group=entry_point_groups.ADAPTERS):
    eps = [EntryPoint(name, value, group) for name, value in points]
    monkeypatch.setattr(entry_point_groups, "entry_points", lambda group: [e for e in eps if e.group == group])


def test_builtin_image_adapter_is_registered_by_entry_point():
    assert registry.discover_adapters()["image"] is ImageAdapter


def test_broken_incompatible_and_duplicate_plugins(monkeypatch):
    fake_entry_points(monkeypatch, [
        ("image", "mae_image.adapter:ImageAdapter"),
        ("broken.plugin", "no_such_module_xyz:Adapter"),
        ("future.kind", "tests.test_registry:FutureAdapter"),
        ("image-clone", "tests.test_registry:CloneAdapter"),
    ])
    with pytest.warns(UserWarning) as caught:
        found = registry.discover_adapters()
    messages = "\n".join(str(w.message) for w in caught)
    assert "broken.plugin" in messages and "failed to import" in messages
    assert "future.kind" in messages and "incompatible" in messages
    assert "duplicate adapter name 'image'" in messages
    assert list(found) == ["image"] and found["image"] is ImageAdapter


def test_unknown_adapter_suggests_a_name():
    with pytest.raises(registry.AdapterNotFound, match="did you mean 'image'"):
        registry.get_adapter("imag")


def test_unknown_adapter_option_is_an_error():
    with pytest.raises(ValueError, match="crop_scale"):
        ImageAdapter({"crop_scal": [0.5, 1.0]})


def test_adapter_base_is_abstract():
    with pytest.raises(TypeError):
        Adapter()


def test_builtins_win_name_clashes_whatever_the_order(monkeypatch):
    """A third-party class registered as 'image' (sorting before the built-in) never replaces it."""
    fake_entry_points(monkeypatch, [
        ("aaa-image", "tests.test_registry:CloneAdapter"),
        ("image", "mae_image.adapter:ImageAdapter"),
    ])
    with pytest.warns(UserWarning, match="keeping the built-in image"):
        found = registry.discover_adapters()
    assert found["image"] is ImageAdapter


def exit_at_import():
    raise SystemExit(3)


def test_a_plugin_calling_sys_exit_at_import_cannot_end_the_process(monkeypatch):
    import sys
    import types

    module = types.ModuleType("plugin_that_exits")
    module.__getattr__ = lambda name: exit_at_import()  # loading the attribute runs "import-time" code
    monkeypatch.setitem(sys.modules, "plugin_that_exits", module)
    fake_entry_points(monkeypatch, [("image", "mae_image.adapter:ImageAdapter"), ("bad.exit", "plugin_that_exits:Adapter")])
    with pytest.warns(UserWarning, match="bad.exit.*failed to import.*SystemExit"):
        found = registry.discover_adapters()
    assert list(found) == ["image"]
