"""The registry behind architectures, devices and engine cores: names, checks, one error type, and entry
points from an installed package (a real ``*.dist-info`` written into a folder on ``sys.path``)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from knobcap.devices import DEVICES, available_devices, get_device, register_device
from knobcap.registry import Registry, RegistryError, check_callable


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a fake distribution ``knobcap-fakeplug`` (a module and its entry points) on sys.path."""

    def install(entry_points: str, module: str = "") -> Path:
        (tmp_path / "fakeplug.py").write_text(textwrap.dedent(module), encoding="utf-8")
        info = tmp_path / "knobcap_fakeplug-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: knobcap-fakeplug\nVersion: 1.0\n",
                                       encoding="utf-8")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        return tmp_path

    yield install
    sys.modules.pop("fakeplug", None)


FAKE_DEVICE = """
    import numpy as np
    from knobcap.controls import Controls, Knob
    from knobcap.devices import VirtualDevice

    class Gain(VirtualDevice):
        name = "fake-gain"
        controls = Controls(knobs=(Knob("gain", 0.0, 2.0, 1.0),))

        def process(self, audio, sample_rate, setting):
            return (np.asarray(audio) * float(setting["gain"])).astype(np.float32)

    NOT_A_DEVICE = 42
"""


def test_names_are_checked_and_a_taken_name_needs_replace() -> None:
    registry: Registry[object] = Registry("widget", "knobcap.test-widgets", check=check_callable("a widget"))
    registry.register("a-1", dict)
    assert registry.get("a-1") is dict and "a-1" in registry and registry.names() == ["a-1"]
    registry.register("a-1", dict)  # the same object again: fine
    for bad in ("", " x", "-x", "a b", 3):
        with pytest.raises(RegistryError, match="names are letters, digits"):
            registry.register(bad, dict)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="'a-1' is already registered; pick another name or pass replace"):
        registry.register("a-1", list)
    registry.register("a-1", list, replace=True)
    assert registry.get("a-1") is list
    with pytest.raises(RegistryError, match="'b' must be a class or a function that builds a widget"):
        registry.register("b", 42)
    with pytest.raises(RegistryError, match=r"^no widget named 'nope'; available: a-1\.$"):
        registry.get("nope")


def test_one_error_type_for_models_devices_and_cores() -> None:
    torch = pytest.importorskip("torch")
    del torch
    from knobcap.models.base import ModelConfigError, create_model, register_model
    from knobcap.runtime.engine import register_core

    with pytest.raises(RegistryError, match=r"^no device named 'nope'; available: .*ts808"):
        get_device("nope")
    with pytest.raises(RegistryError) as unknown:
        create_model("nope", {"n_controls": 1})
    assert isinstance(unknown.value, ModelConfigError)  # what models raised before: still caught by it
    with pytest.raises(RegistryError, match=r"is not a subclass of knobcap\.models\.base\.ParametricModel"):
        register_model("not-a-model", dict)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="must be a class or a function that builds an engine core"):
        register_core("broken-core", "not callable")  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="has no process"):
        register_device("no-process", dict)  # type: ignore[arg-type]


def test_device_names_ignore_case_and_the_built_in_loads_on_first_use() -> None:
    assert "ts808" in available_devices() and "TS808" in DEVICES
    assert type(get_device("TS808", oversampling=4)).__name__ == "TS808"


def test_an_installed_package_registers_a_device_by_entry_point(installed) -> None:
    installed("""
        [knobcap.devices]
        fake-gain = fakeplug:Gain
    """, FAKE_DEVICE)
    registry = Registry("device", "knobcap.devices", fold_case=True)
    assert "fake-gain" in registry.names()
    assert "fakeplug" not in sys.modules  # listed, not imported
    device = registry.get("FAKE-GAIN")()
    x = np.linspace(-0.5, 0.5, 64)
    assert np.allclose(device(x, 48_000, gain=2.0), 2 * x)
    assert np.allclose(device(x, 48_000), x)  # the default setting


def test_the_device_registry_reads_entry_points_lazily(installed, monkeypatch) -> None:
    installed("""
        [knobcap.devices]
        fake-gain = fakeplug:Gain
    """, FAKE_DEVICE)
    fresh = Registry("device", "knobcap.devices", fold_case=True, check=DEVICES._check)
    fresh.register_lazy("ts808", "knobcap.devices.ts808:TS808")
    monkeypatch.setattr("knobcap.devices.DEVICES", fresh)
    assert "fake-gain" in available_devices()
    assert np.allclose(get_device("fake-gain")(np.ones(4), 48_000, gain=0.5), 0.5)


def test_a_broken_entry_point_is_one_line_naming_it(installed) -> None:
    installed("""
        [knobcap.devices]
        missing-module = fakeplug_not_there:Thing
        missing-name = fakeplug:Nothing
        not-a-device = fakeplug:NOT_A_DEVICE
    """, FAKE_DEVICE)
    registry = Registry("device", "knobcap.devices", check=check_callable("a device"))
    with pytest.raises(RegistryError) as missing:
        registry.get("missing-module")
    message = str(missing.value)
    assert "\n" not in message
    assert message.startswith("entry point missing-module = fakeplug_not_there:Thing in group "
                              "knobcap.devices from knobcap-fakeplug cannot be loaded (ModuleNotFoundError: ")
    assert message.endswith("fix or uninstall the package that declares it.")
    with pytest.raises(RegistryError, match=r"missing-name = fakeplug:Nothing .* \(AttributeError: "):
        registry.get("missing-name")
    with pytest.raises(RegistryError, match=r"^entry point not-a-device = fakeplug:NOT_A_DEVICE .*: "
                                            r"'not-a-device' must be a class or a function"):
        registry.get("not-a-device")


def test_code_wins_over_an_entry_point_of_the_same_name(installed) -> None:
    installed("""
        [knobcap.widgets]
        same = fakeplug:Gain
    """, FAKE_DEVICE)
    registry: Registry[object] = Registry("widget", "knobcap.widgets")
    registry.register("same", dict)
    assert registry.get("same") is dict


def test_an_architecture_and_an_engine_core_by_entry_point(installed) -> None:
    pytest.importorskip("torch")
    from knobcap.models.base import ARCHITECTURES, ParametricModel
    from knobcap.runtime.engine import CORES

    installed("""
        [knobcap.architectures]
        fake-net = fakeplug:FakeNet

        [knobcap.engine_cores]
        fake-net = fakeplug:fake_core
    """, """
        from knobcap.models.base import ParametricModel

        class FakeNet(ParametricModel):
            @property
            def receptive_field(self):
                return 1

        def fake_core(config, weights, max_block):
            return ("core", config["n_controls"], max_block)
    """)
    architectures = Registry("architecture", "knobcap.architectures", check=ARCHITECTURES._check,
                             error=ARCHITECTURES.error)
    model = architectures.get("fake-net")({"n_controls": 3})
    assert isinstance(model, ParametricModel) and model.n_controls == 3
    cores = Registry("engine core", "knobcap.engine_cores", check=CORES._check)
    assert cores.get("fake-net")({"n_controls": 2}, {}, 64) == ("core", 2, 64)
