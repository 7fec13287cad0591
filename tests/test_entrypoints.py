"""Entry points read without importlib.metadata: the same answers as importlib.metadata.

Plugin loading reads the ``cargohold`` group on every command, so
`cargohold.core.plugin.entrypoints` scans plain ``sys.path`` folders itself; here
its answers are compared with `importlib.metadata.entry_points` on real
layouts: this environment, shadowed and egg-style distributions, a zip.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import zipfile
from pathlib import Path

import pytest

from cargohold.core.plugin.entrypoints import PluginEntry, group_entries


def reference(group: str) -> list[PluginEntry]:
    importlib.invalidate_caches()
    return [
        PluginEntry(ep.name, ep.value, ep.dist.name, ep.dist.version)
        for ep in importlib.metadata.entry_points(group=group)
        if ep.dist is not None
    ]


def dist_info(site: Path, folder: str, name: str, version: str, entry_points: str) -> None:
    info = site / folder
    info.mkdir(parents=True)
    metadata = "METADATA" if folder.endswith(".dist-info") else "PKG-INFO"
    (info / metadata).write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x: y\n\nBody: no\n"
    )
    (info / "entry_points.txt").write_text(entry_points)


@pytest.mark.parametrize("group", ["cargohold", "console_scripts"])
def test_this_environment_reads_alike(group: str) -> None:
    found = group_entries(group)
    assert found == reference(group)
    if group == "cargohold":
        own = {e.name: e for e in found if e.dist_name == "cargohold"}
        assert own["volume-drivers"].value == "cargohold.plugins.volume_drivers"


def test_shadowed_commented_and_egg_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist_info(
        first,
        "Shiny_Plugin-2.0.dist-info",
        "shiny.plugin",
        "2.0",
        "# a comment\n[console_scripts]\nshiny = shiny:main\n\n"
        "[cargohold]\n  # indented\nshiny = shiny_mod:Plugin.instance [extra]\n",
    )
    dist_info(first, "eggy-0.3.egg-info", "eggy", "0.3", "[cargohold]\neggy=eggy_mod\n")
    # the same distribution later on the path is hidden, as Python would import the first
    dist_info(second, "shiny_plugin-1.0.dist-info", "shiny-plugin", "1.0", "[cargohold]\nold = x\n")
    dist_info(second, "other-1.dist-info", "other", "1", "[other]\nnot = ours\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))

    found = group_entries("cargohold")
    assert found == reference("cargohold")
    ours = [e for e in found if e.dist_name in {"shiny.plugin", "eggy", "shiny-plugin"}]
    assert ours == [
        PluginEntry("shiny", "shiny_mod:Plugin.instance [extra]", "shiny.plugin", "2.0"),
        PluginEntry("eggy", "eggy_mod", "eggy", "0.3"),
    ]


def test_a_zip_on_the_path_is_read_through_importlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        z.writestr("zipped-1.0.dist-info/entry_points.txt", "[cargohold]\nzipped = zipped_mod\n")
    monkeypatch.syspath_prepend(str(archive))
    found = group_entries("cargohold")
    assert PluginEntry("zipped", "zipped_mod", "zipped", "1.0") in found
    assert found == reference("cargohold")


def test_load_imports_the_module_and_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ep_target_mod.py").write_text("class Holder:\n    value = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert PluginEntry("t", "ep_target_mod:Holder.value", "d", "1").load() == 42
        assert PluginEntry("t", "ep_target_mod", "d", "1").load() is sys.modules["ep_target_mod"]
        with pytest.raises(ImportError, match="names no module"):
            PluginEntry("t", "not a module!", "d", "1").load()
    finally:
        sys.modules.pop("ep_target_mod", None)
