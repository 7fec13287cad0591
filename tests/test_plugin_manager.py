"""The plugin manager: entry points, autoload switch, blocking, validation, driver names.

Third-party plugins are real distributions: a ``.dist-info`` folder with an
``entry_points.txt`` on ``sys.path``, found by `importlib.metadata` exactly as
an installed package's would be.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cargohold.core import (
    Conflict,
    InvalidArgument,
    KnownImplementation,
    NotFound,
    Runtime,
    VolumeDriver,
    hookimpl,
)
from cargohold.core.plugin.manager import PluginError, build_plugin_manager

from .test_volume_service import CountingDriver

DEMO_MODULE = "cargohold_demo_thirdparty"


def install_fake_distribution(site: Path, module_source: str, *, dist: str = "demo-plugin") -> None:
    """Lay out what pip would: a module and a dist-info naming it in the cargohold group."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{DEMO_MODULE}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{dist.replace('-', '_')}-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(f"[cargohold]\ndemo = {DEMO_MODULE}\n")


DEMO_SOURCE = """
    from pathlib import Path
    from cargohold.core import DriverVolume, NotFound, VolumeDriver, hookimpl

    class DemoDriver(VolumeDriver):
        name = "demo"
        def create(self, name, opts): (self.root / name).mkdir(exist_ok=True)
        def remove(self, name, opts): (self.root / name).rmdir()
        def mount(self, name, mount_id, opts): return self.root / name
        def unmount(self, name, mount_id, opts): pass
        def get(self, name):
            if not (self.root / name).is_dir():
                raise NotFound(name)
            return DriverVolume(name, self.root / name)
        def list(self): return [DriverVolume(p.name, p) for p in self.root.iterdir()]

    @hookimpl
    def cargohold_volume_drivers():
        return [DemoDriver]
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A third-party distribution providing the ``demo`` driver, visible to this process."""
    site = tmp_path / "site"
    install_fake_distribution(site, DEMO_SOURCE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CARGOHOLD_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("CARGOHOLD_BLOCK_PLUGINS", raising=False)
    yield site
    sys.modules.pop(DEMO_MODULE, None)


def test_builtins_come_through_the_entry_point_group(runtime: Runtime) -> None:
    declared = {
        ep.name: ep.value
        for ep in importlib.metadata.entry_points(group="cargohold")
        if ep.dist is not None and ep.dist.name == "cargohold"
    }
    assert declared["volume-drivers"] == "cargohold.plugins.volume_drivers"
    loaded = dict(runtime.plugin_manager.list_name_plugin())
    for name, value in declared.items():
        module, _, attribute = value.partition(":")
        expected = importlib.import_module(module)
        assert loaded[name] is (getattr(expected, attribute) if attribute else expected)
        assert runtime.plugin_manager.origins[name].startswith("cargohold ")
    assert {"local", "bind"} <= set(runtime.drivers.names())


def test_third_party_plugin_is_loaded_with_its_distribution(
    third_party: Path, state_dir: Path
) -> None:
    with Runtime(state_dir) as rt:
        assert rt.plugin_manager.origins["demo"] == "demo-plugin 1.2"
        rt.volumes.create("v1", "demo")
        assert (rt.state_dir / "drivers" / "demo" / "v1").is_dir()
        assert rt.volumes.get("v1").driver == "demo"


def test_autoload_off_keeps_only_cargohold_plugins(
    third_party: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARGOHOLD_DISABLE_PLUGIN_AUTOLOAD", "1")
    with Runtime(state_dir) as rt:
        names = {name for name, _ in rt.plugin_manager.list_name_plugin()}
        assert "demo" not in names
        assert {"volume-drivers", "secrets"} <= names
        with pytest.raises(NotFound, match="no volume driver named 'demo'"):
            rt.volumes.create("v1", "demo")
    pm = build_plugin_manager(autoload=True)  # an explicit argument wins over the variable
    assert pm.has_plugin("demo")


def test_blocked_plugins_are_not_loaded(
    third_party: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARGOHOLD_BLOCK_PLUGINS", "demo, secrets")
    monkeypatch.setenv("CARGOHOLD_TEST_TOKEN", "x")
    with Runtime(state_dir) as rt:
        assert not rt.plugin_manager.has_plugin("demo")
        assert not rt.plugin_manager.has_plugin("secrets")
        assert rt.plugin_manager.has_plugin("volume-drivers")
        # with the built-in secret resolver blocked, env: references resolve no more
        assert rt.hook.cargohold_resolve_secret(ref="env:CARGOHOLD_TEST_TOKEN") is None
    monkeypatch.delenv("CARGOHOLD_BLOCK_PLUGINS")
    assert not build_plugin_manager(blocked=["demo"]).has_plugin("demo")


def test_misspelled_hook_fails_at_registration(state_dir: Path) -> None:
    class Typo:
        @hookimpl
        def cargohold_volume_driver(self) -> list[type[VolumeDriver]]:  # missing "s"
            return []

    with pytest.raises(PluginError, match="unknown hook 'cargohold_volume_driver'"):
        Runtime(state_dir, plugins=[Typo()])
    assert not (state_dir / "state.db").exists()  # nothing was set up


def test_hook_with_wrong_arguments_fails_at_registration() -> None:
    class WrongArgs:
        @hookimpl
        def cargohold_resolve_secret(self, reference: str) -> str | None:
            return None

    with pytest.raises(PluginError, match="reference"):
        build_plugin_manager(plugins=[WrongArgs()])


def test_broken_third_party_plugin_names_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    install_fake_distribution(
        site,
        """
        from cargohold.core import hookimpl

        @hookimpl
        def cargohold_volume_drivres():
            return []
        """,
        dist="typo-plugin",
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        with pytest.raises(PluginError) as caught:
            build_plugin_manager(autoload=True)
        message = str(caught.value)
        assert "plugin demo (typo-plugin 1.2)" in message
        assert "cargohold_volume_drivres" in message
        assert "CARGOHOLD_BLOCK_PLUGINS=demo" in message
        assert not build_plugin_manager(autoload=True, blocked=["demo"]).has_plugin("demo")
    finally:
        sys.modules.pop(DEMO_MODULE, None)


def test_two_drivers_with_one_name_is_an_error(state_dir: Path) -> None:
    class Twin(CountingDriver):
        name = "local"

    class Provides:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
            return [Twin]

    with Runtime(state_dir, plugins=[Provides()]) as rt:
        with pytest.raises(
            Conflict, match="two plugins provide a volume driver named 'local'"
        ) as e:
            rt.volumes.create("v1", "local")
        assert "Twin" in str(e.value) and "LocalDriver" in str(e.value)
        assert "CARGOHOLD_BLOCK_PLUGINS" in str(e.value)
        assert rt.store.list() == []


def test_a_driver_class_missing_methods_is_refused(state_dir: Path) -> None:
    class Half(VolumeDriver):
        name = "half"

    class Provides:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
            return [Half]

    with (
        Runtime(state_dir, plugins=[Provides()]) as rt,
        pytest.raises(InvalidArgument, match="does not implement: create, get, list, mount"),
    ):
        rt.drivers.get("local")


def test_managers_are_per_runtime(tmp_path: Path) -> None:
    class Provides:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
            return [CountingDriver]

    with Runtime(tmp_path / "a", plugins=[Provides()]) as a, Runtime(tmp_path / "b") as b:
        assert a.plugin_manager is not b.plugin_manager
        assert "counting" in a.drivers.names()
        assert "counting" not in b.drivers.names()


def test_a_driver_behind_an_extra_gives_its_install_hint(tmp_path: Path) -> None:
    class Registers:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[KnownImplementation]:
            return [
                KnownImplementation(
                    "nfsx",
                    "cargohold_nfsx.driver:NfsDriver",
                    install="pip install 'cargohold[nfs]'",
                    requires=("cargohold_nfsx_sdk",),
                )
            ]

    with Runtime(tmp_path / "state", plugins=[Registers()]) as rt:
        assert "nfsx" not in rt.drivers.names()  # its SDK is missing: not installed
        assert rt.drivers.not_installed() == {"nfsx": "pip install 'cargohold[nfs]'"}
        with pytest.raises(NotFound, match=r"install it with pip install 'cargohold\[nfs\]'"):
            rt.volumes.create("v1", "nfsx")
        assert rt.volumes.list() == []


def test_a_class_and_its_own_known_entry_are_one_driver(tmp_path: Path) -> None:
    from cargohold.drivers.bind import BindDriver

    class Registers:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[object]:
            return [KnownImplementation("bind", "cargohold.drivers.bind:BindDriver"), BindDriver]

    with Runtime(tmp_path / "state", plugins=[Registers()]) as rt:
        assert rt.drivers.classes()["bind"] is BindDriver


def test_a_known_implementation_is_imported_only_when_used(tmp_path: Path) -> None:
    class Registers:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[KnownImplementation]:
            return [KnownImplementation("bind2", "cargohold.drivers.bind:BindDriver")]

    with Runtime(tmp_path / "state", plugins=[Registers()]) as rt:
        assert "bind2" in rt.drivers.names()
        # the class is checked when imported: its own name must match the registration
        with pytest.raises(InvalidArgument, match="registered as 'bind2' but is named 'bind'"):
            rt.volumes.create("v1", "bind2")


def test_unknown_driver_lists_installed_ones(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match=r"driver named 'nfsx'; installed drivers: .*local"):
        runtime.volumes.create("v1", "nfsx")
    with pytest.raises(InvalidArgument, match="invalid driver name"):
        runtime.volumes.create("v1", "../evil")
