"""``cargohold driver ls|check``: see installed drivers, and run the shipped
conformance suite on any of them without writing a test file."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cargohold.core import hookimpl
from cargohold.core.api.volume_driver import VolumeDriver
from cargohold.core.cli import emit_json, key_values, runtime, table


@hookimpl
def cargohold_cli(group: click.Group) -> None:
    group.add_command(driver)


@click.group()
def driver() -> None:
    """Inspect volume drivers and check them against the contract."""


@driver.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def driver_ls(fmt: str) -> None:
    """List installed volume drivers, and the Docker volume plugins found."""
    rt = runtime()
    classes = rt.drivers.classes()
    rows = [_describe(cls) for _, cls in sorted(classes.items())]
    # an installed driver wins over a plugin of the same name, as `-d NAME` picks it
    rows += [p for p in _docker_plugins(rt.plugin_manager) if p["name"] not in classes]
    if fmt == "json":
        emit_json(rows)
        return
    table(
        [
            [r["name"], r["scope"] or "-", ", ".join(r["capabilities"]) or "-", _origin(r)]
            for r in rows
        ],
        ["DRIVER", "SCOPE", "CAPABILITIES", "FROM"],
    )


def _origin(row: dict[str, Any]) -> str:
    if row["kind"] != "docker-plugin":
        return str(row["module"])
    if row["error"]:
        return f"Docker plugin, unusable: {row['error']}"
    return f"Docker plugin at {row['address']}"


def _docker_plugins(pm: Any) -> list[dict[str, Any]]:
    """Docker volume plugins, from whichever loaded plugin finds them (the docker
    client's `found_volume_drivers`): none when that plugin is blocked, since
    `-d NAME` would not find them either."""
    rows: list[dict[str, Any]] = []
    for _, plugin in pm.list_name_plugin():
        finder = getattr(plugin, "found_volume_drivers", None)
        if not callable(finder):
            continue
        for found in finder():
            rows.append(
                {
                    "name": found["name"],
                    "kind": "docker-plugin",
                    # known only once the plugin is asked: listing contacts none
                    "scope": None,
                    "capabilities": [],
                    "options": [],
                    "module": getattr(plugin, "__name__", ""),
                    "address": found["address"],
                    "error": found["error"],
                }
            )
    return rows


def _describe(cls: type[VolumeDriver]) -> dict[str, Any]:
    caps = cls.capabilities
    return {
        "name": cls.name,
        "kind": "installed",
        "scope": cls.scope,
        "capabilities": [c for c in ("snapshot", "clone", "resize", "usage") if getattr(caps, c)],
        "options": [o.name for o in cls.options],
        "module": cls.__module__,
    }


@driver.command("check")
@click.argument("names", nargs=-1)
@click.option(
    "-o",
    "--opt",
    "opts",
    multiple=True,
    help="option of a plain volume (default: the driver's example options); "
    "{tmp} in a value becomes a fresh empty directory",
)
@click.option("-v", "--verbose", is_flag=True, help="one line per check")
def driver_check(names: Sequence[str], opts: Sequence[str], verbose: bool) -> None:
    """Run the conformance suite on installed drivers.

    All of them by default. Each check runs on a private temporary state directory: nothing of yours
    is touched. Exit code 0 when every check passes.
    """
    import tempfile

    import pytest  # the suite is pytest-based: pip install 'cargohold[testing]'

    classes = runtime().drivers.classes()
    wanted = list(names) or sorted(classes)
    missing = [n for n in wanted if n not in classes]
    if missing:
        raise click.UsageError(
            f"no installed driver named {', '.join(missing)}; installed: {', '.join(classes)}"
        )
    given = key_values(opts, "option") if opts else None
    with tempfile.TemporaryDirectory(prefix="cargohold-check-") as workdir:
        module = Path(workdir, "test_conformance.py")
        module.write_text(_test_module([classes[n] for n in wanted], given))
        args = [str(module), "-p", "no:cacheprovider", "-q" if not verbose else "-v"]
        args += ["--rootdir", workdir, "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
        code = pytest.main(args)
    sys.exit(0 if code == 0 else 1)


def _test_module(classes: Sequence[type[VolumeDriver]], opts: dict[str, str] | None) -> str:
    """A test module with one conformance class per driver."""
    import textwrap

    parts = [
        "import pytest",
        "from cargohold.core.testing.volume_drivers import VolumeDriverConformance",
    ]
    for cls in classes:
        options = opts if opts is not None else dict(cls.example_options)
        parts.append(
            textwrap.dedent(f"""
            from {cls.__module__} import {cls.__qualname__} as _{cls.name.replace("-", "_")}

            class Test_{cls.name.replace("-", "_").replace(".", "_")}(VolumeDriverConformance):
                driver_class = _{cls.name.replace("-", "_")}
                remove_deletes_data = {cls.removes_data!r}

                @pytest.fixture
                def volume_options(self, tmp_path):
                    def fill(value):
                        if "{{tmp}}" not in value:
                            return value
                        fresh = tmp_path / "tmp"
                        fresh.mkdir(exist_ok=True)
                        return value.replace("{{tmp}}", str(fresh))
                    return {{k: fill(v) for k, v in {options!r}.items()}}
            """)
        )
    return "\n".join(parts)
