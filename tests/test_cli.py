"""The real ``cargohold`` console script, run as a user would, on a private state dir.

Exit codes: 0 success, 1 an operation failed (one ``Error: ...`` line on
stderr), 2 a usage error. No user error ever prints a traceback.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from cargohold.core import Runtime
from cargohold.core.cli import build_cli
from cargohold.core.plugin.manager import build_plugin_manager

from .realdocker import DockerEngine
from .test_plugin_manager import install_fake_distribution

CARGOHOLD = Path(sys.executable).parent / "cargohold"


class Cli:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CARGOHOLD_")}
        self.env["CARGOHOLD_STATE_DIR"] = str(state_dir)

    def __call__(
        self, *args: str, code: int = 0, stdin: str = "", **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(CARGOHOLD), *args],
            capture_output=True,
            text=True,
            input=stdin,
            env={**self.env, **env},
            timeout=60,
        )
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        if code == 1:
            errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
            assert errors, result.stderr
        return result

    def names(self, *args: str, **env: str) -> list[str]:
        return self("volume", "ls", "-q", *args, **env).stdout.split()


@pytest.fixture
def cli(state_dir: Path) -> Cli:
    return Cli(state_dir)


def test_create_ls_inspect_rm_round_trip(cli: Cli) -> None:
    assert cli("volume", "create", "--label", "env=prod", "--label", "flag", "data").stdout == (
        "data\n"
    )
    listed = cli("volume", "ls").stdout.splitlines()
    assert listed[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert listed[1].split() == ["local", "data"]

    (view,) = json.loads(cli("volume", "inspect", "data").stdout)
    assert view["Name"] == "data" and view["Driver"] == "local"
    assert view["Labels"] == {"env": "prod", "flag": ""}
    assert view["Scope"] == "local" and "RefCount" not in view
    assert view["CreatedAt"].endswith("Z")
    assert Path(view["Mountpoint"]).is_dir()
    assert Path(view["Mountpoint"]).is_relative_to(cli.state_dir)

    assert cli("volume", "rm", "data").stdout == "data\n"
    assert cli.names() == []
    assert not Path(view["Mountpoint"]).exists()


def test_create_with_driver_and_options(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "src"
    cli("volume", "create", "-d", "bind", "-o", f"source={source}", "-o", "create=true", "b1")
    assert source.is_dir()
    (view,) = json.loads(cli("volume", "inspect", "b1").stdout)
    assert view["Driver"] == "bind"
    assert view["Options"] == {"source": str(source), "create": "true"}


def test_create_without_name_is_anonymous(cli: Cli) -> None:
    name = cli("volume", "create").stdout.strip()
    assert len(name) == 64 and set(name) <= set("0123456789abcdef")
    (view,) = json.loads(cli("volume", "inspect", name).stdout)
    assert view["Labels"] == {"com.docker.volume.anonymous": ""}


def test_option_help_lists_declared_options(cli: Cli) -> None:
    out = cli("volume", "create", "-d", "bind", "-o", "help").stdout
    assert "driver bind" in out
    for option in ("source", "create", "readonly", "propagation"):
        assert f"  {option} " in out
    assert "required" in out
    assert cli.names() == []  # -o help creates nothing


def test_ls_filters_quiet_and_json(cli: Cli, state_dir: Path) -> None:
    cli("volume", "create", "--label", "env=prod", "p1")
    cli("volume", "create", "--label", "env=dev", "d1")
    cli("volume", "create", "x1")
    with Runtime(state_dir) as rt:
        rt.volumes.mount("p1", "ctr")
    assert cli.names("--filter", "label=env") == ["d1", "p1"]
    assert cli.names("--filter", "label=env=prod") == ["p1"]
    assert cli.names("-f", "label!=env=prod") == ["d1", "x1"]
    assert cli.names("--filter", "dangling=true") == ["d1", "x1"]
    assert cli.names("--filter", "name=1", "--filter", "driver=local") == ["d1", "p1", "x1"]
    assert cli.names("--filter", "driver=bind") == []
    out = cli("volume", "ls", "--format", "json", "--filter", "label=env").stdout
    rows = [json.loads(line) for line in out.splitlines()]  # docker's form: a JSON object a line
    assert [(r["Name"], r["Labels"]) for r in rows] == [("d1", "env=dev"), ("p1", "env=prod")]
    assert cli("volume", "ls", "--format", "json", "--filter", "name=zz").stdout == ""


def test_ls_json_has_the_fields_docker_gives(
    cli: Cli, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """``volume ls --format json`` as the real docker CLI prints it, field for field."""
    name = f"ls-json-{secrets.token_hex(4)}"
    args = ["volume", "create", "--label", "b=2", "--label", "a=", name]
    docker_engine.docker(*args)
    try:
        theirs = docker_engine.docker("volume", "ls", "--format", "json", "-f", f"name={name}")
    finally:
        docker_engine.docker("volume", "rm", name)
    cli(*args)
    ours = cli("volume", "ls", "--format", "json", "-q").stdout  # --format wins, as in docker
    (their_row,) = [json.loads(line) for line in theirs.stdout.splitlines()]
    (our_row,) = [json.loads(line) for line in ours.splitlines()]
    assert sorted(our_row) == sorted(their_row)
    assert ours.strip() == json.dumps(our_row, sort_keys=True, separators=(",", ":"))
    for key, value in their_row.items():
        if key == "Labels":  # docker lists them in map order; we sort them
            assert sorted(our_row[key].split(",")) == sorted(value.split(","))
        elif key != "Mountpoint":
            assert our_row[key] == value, key
    assert Path(our_row["Mountpoint"]).is_relative_to(cli.state_dir)


def test_rm_in_use_refused_even_forced(cli: Cli, state_dir: Path) -> None:
    cli("volume", "create", "busy")
    with Runtime(state_dir) as rt:
        rt.volumes.mount("busy", "container-7")
    for flags in ([], ["-f"], ["--force"]):
        result = cli("volume", "rm", *flags, "busy", code=1)
        assert result.stderr == (
            "Error: volume busy is in use - [container-7]: stop or remove what uses it first\n"
        )
    assert cli.names() == ["busy"]
    (view,) = json.loads(cli("volume", "inspect", "busy").stdout)
    assert view["Status"] == {"RefCount": 1}  # docker has no field for it: under Status


def test_rm_missing(cli: Cli) -> None:
    cli("volume", "create", "here")
    result = cli("volume", "rm", "ghost", "here", code=1)
    assert result.stderr == "Error: no such volume: ghost\n"
    assert result.stdout == "here\n"  # the others are still removed, as docker does
    assert cli("volume", "rm", "-f", "ghost").returncode == 0


def test_inspect_matches_docker_volume_inspect(cli: Cli) -> None:
    # docker 20.10 against its local driver, for `docker volume create plain`
    cli("volume", "create", "plain")
    out = cli("volume", "inspect", "plain").stdout
    (view,) = json.loads(out)
    assert list(view) == [
        "CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"
    ]  # fmt: skip
    assert view["Labels"] is None and view["Options"] is None
    assert out.startswith('[\n    {\n        "CreatedAt": "')  # four-space indents, as docker


def test_inspect_prints_what_docker_volume_inspect_prints(
    cli: Cli, docker_engine: DockerEngine
) -> None:
    """The real docker CLI against the real engine, byte for byte but for the
    creation times and mountpoints."""
    tag = secrets.token_hex(4)
    plain, rich = f"plain-{tag}", f"rich-{tag}"
    rich_args = ["--label", "z=1", "--label", "a=", "-o", "type=tmpfs", "-o", "device=tmpfs"]
    for args in (["volume", "create", plain], ["volume", "create", *rich_args, rich]):
        docker_engine.docker(*args)
        cli(*args)
    try:
        theirs = docker_engine.docker("volume", "inspect", plain, rich).stdout
    finally:
        docker_engine.docker("volume", "rm", plain, rich)
    ours = cli("volume", "inspect", plain, rich).stdout

    def comparable(text: str) -> str:
        views = json.loads(text)
        for view in views:
            view["CreatedAt"] = view["Mountpoint"] = "-"
        return json.dumps(views, indent=4)

    assert comparable(ours) == comparable(theirs)
    # and both print exactly that layout: keys in this order, four-space indents
    for text in (ours, theirs):
        assert text == json.dumps(json.loads(text), indent=4) + "\n"


def test_inspect_some_missing(cli: Cli) -> None:
    cli("volume", "create", "here")
    result = cli("volume", "inspect", "here", "ghost", code=1)
    assert [v["Name"] for v in json.loads(result.stdout)] == ["here"]
    assert result.stderr == "Error: no such volume: ghost\n"


def test_prune(cli: Cli, state_dir: Path) -> None:
    anon = cli("volume", "create", "--label", "tmp=1").stdout.strip()
    cli("volume", "create", "--label", "tmp=1", "named")
    cli("volume", "create", "keep")
    busy = cli("volume", "create").stdout.strip()
    with Runtime(state_dir) as rt:
        rt.volumes.mount(busy, "ctr")

    # without -f it asks, and "n" means no
    asked = cli("volume", "prune", stdin="n\n")
    assert "Are you sure?" in asked.stdout and "Deleted" not in asked.stdout
    assert len(cli.names()) == 4

    out = cli("volume", "prune", stdin="y\n").stdout.split("[y/N]: ")[1]
    assert out.splitlines()[:2] == ["Deleted Volumes:", anon]
    assert "Total reclaimed space:" in out
    assert sorted(cli.names()) == sorted(["named", "keep", busy])

    cli("volume", "prune", "-a", "-f", "--filter", "label=tmp")
    assert sorted(cli.names()) == sorted(["keep", busy])
    # docker's all filter is -a; dangling=false selects only used volumes: nothing to prune
    cli("volume", "prune", "-f", "--filter", "all=true", "--filter", "dangling=false")
    assert sorted(cli.names()) == sorted(["keep", busy])
    cli(
        "volume",
        "prune",
        "--force",
        "--filter",
        "all=1",
        "--filter",
        "label!=tmp",
        "--filter",
        "dangling=true",
    )
    assert cli.names() == [busy]

    result = cli("volume", "prune", "--filter", "dangling=maybe", "-f", code=1)
    assert "invalid filter" in result.stderr


def test_plugin_ls(cli: Cli) -> None:
    out = cli("plugin", "ls").stdout.splitlines()
    assert out[0].split() == ["PLUGIN", "FROM", "DRIVERS"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert "cargohold 0.1.0" in rows["volume-drivers"]
    assert "local, bind" in rows["volume-drivers"]
    plugins = json.loads(cli("plugin", "ls", "--format", "json").stdout)
    by_name = {p["name"]: p for p in plugins}
    assert {"local", "bind"} <= set(by_name["volume-drivers"]["drivers"])
    assert by_name["secrets"]["distribution"].startswith("cargohold ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["volume", "create", "../x"], "Error: invalid volume name '../x'"),
        (["volume", "create", "a"], "Error: invalid volume name 'a'"),
        (["volume", "create", "x" * 300], "is 300 characters long"),
        (["volume", "create", "-o", "colour=red", "v1"], "Error: invalid option 'colour'"),
        (["volume", "create", "-d", "bind", "v1"], "needs option source"),
        (["volume", "create", "-d", "nope", "v1"], "Error: no volume driver named 'nope'"),
        (["volume", "create", "--label", "=x", "v1"], "Error: bad label '=x'"),
        (["volume", "ls", "--filter", "colour=red"], "Error: invalid filter 'colour'"),
        (["volume", "ls", "--filter", "nonsense"], "Error: bad filter 'nonsense'"),
        (["volume", "inspect", "ghost"], "Error: no such volume: ghost"),
    ],
)
def test_operation_errors_exit_1_with_one_line(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args, code=1)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli.names() == []


@pytest.mark.parametrize(
    "args",
    [
        ["volume", "frobnicate"],
        ["volume", "ls", "--format", "xml"],
        ["volume", "rm"],
        ["volume", "inspect"],
        ["volume", "create", "--nope"],
        ["--no-such-flag"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    result = cli(*args, code=2)
    assert "Usage:" in result.stderr


def test_existing_volume_with_other_options_names_difference(cli: Cli) -> None:
    cli("volume", "create", "--label", "a=1", "v1")
    result = cli("volume", "create", "--label", "a=2", "v1", code=1)
    assert "label a is '1', asked '2'" in result.stderr
    cli("volume", "create", "--label", "a=1", "v1")  # the same ask again is fine


SECRET_PLUGIN = """
    from cargohold.core import DriverVolume, NotFound, Option, VolumeDriver, hookimpl

    class Vaulty(VolumeDriver):
        name = "vaulty"
        options = (Option("token", secret=True, required=True), Option("fail", type="bool"))
        def create(self, name, opts):
            if opts.get("fail"):
                raise RuntimeError("server refused token " + opts["token"])
            (self.root / name).mkdir()
        def remove(self, name, opts): (self.root / name).rmdir()
        def mount(self, name, mount_id, opts): return self.root / name
        def unmount(self, name, mount_id, opts): pass
        def get(self, name): return DriverVolume(name, self.root / name)
        def list(self): return []

    @hookimpl
    def cargohold_volume_drivers():
        return [Vaulty]
"""


def test_secret_never_printed_nor_stored(cli: Cli, state_dir: Path, tmp_path: Path) -> None:
    install_fake_distribution(tmp_path / "site", SECRET_PLUGIN, dist="vaulty-plugin")
    secret = "cli-secret-value-42"
    env = {"PYTHONPATH": str(tmp_path / "site"), "VAULTY_TOKEN": secret}
    assert "vaulty" in cli("plugin", "ls", **env).stdout
    described = cli("volume", "create", "-d", "vaulty", "-o", "help", **env).stdout
    assert "secret: give env:NAME or file:/path" in described

    cli("volume", "create", "-d", "vaulty", "-o", "token=env:VAULTY_TOKEN", "v1", **env)
    inspected = cli("volume", "inspect", "v1", **env).stdout
    assert json.loads(inspected)[0]["Options"] == {"token": "env:VAULTY_TOKEN"}
    listed = cli("volume", "ls", "--format", "json", **env).stdout
    failed = cli(
        "volume",
        "create",
        "-d",
        "vaulty",
        "-o",
        "token=env:VAULTY_TOKEN",
        "-o",
        "fail",
        "v2",
        code=1,
        **env,
    )
    assert failed.stderr == "Error: server refused token ********\n"
    literal = cli("volume", "create", "-d", "vaulty", "-o", f"token={secret}", "v3", code=1, **env)
    assert "token is secret" in literal.stderr
    for output in (inspected, listed, failed.stdout, failed.stderr, literal.stdout, literal.stderr):
        assert secret not in output
    written = b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file())
    assert b"env:VAULTY_TOKEN" in written and secret.encode() not in written
    assert cli.names(**env) == ["v1"]


def test_bad_state_dir_is_one_line(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("volume", "ls", code=1, CARGOHOLD_STATE_DIR=str(blocker / "sub"))
    assert "cannot open the state directory" in result.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "state.db").write_text("this is no database" * 100)
    result = cli("volume", "ls", code=1, CARGOHOLD_STATE_DIR=str(corrupt))
    assert "not a database" in result.stderr


def test_state_dir_flag_and_env(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other"
    cli("--state-dir", str(other), "volume", "create", "flagged")
    assert (other / "state.db").is_file()
    assert cli.names() == []
    assert cli("--state-dir", str(other), "volume", "ls", "-q").stdout == "flagged\n"


def test_help_and_version(cli: Cli) -> None:
    assert "volume" in cli("--help").stdout
    assert "0.1.0" in cli("--version").stdout


def test_broken_plugin_is_one_line_and_can_be_blocked(cli: Cli, tmp_path: Path) -> None:
    broken = """
        from cargohold.core import hookimpl

        @hookimpl
        def cargohold_volume_driver():
            return []
    """
    install_fake_distribution(tmp_path / "site", broken, dist="broken-plugin")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    result = cli("volume", "ls", code=1, **env)
    assert result.stderr.startswith("Error: plugin demo (broken-plugin 1.2) cannot be loaded")
    assert "unknown hook 'cargohold_volume_driver'" in result.stderr
    assert "CARGOHOLD_BLOCK_PLUGINS=demo" in result.stderr
    cli("volume", "ls", CARGOHOLD_BLOCK_PLUGINS="demo", **env)
    cli("volume", "ls", CARGOHOLD_DISABLE_PLUGIN_AUTOLOAD="1", **env)


def _groups(group: click.Group, path: str) -> Iterator[tuple[str, click.Group]]:
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _groups(command, f"{path} {name}")


def test_every_command_summary_fits_its_help_line() -> None:
    # click cuts a summary that does not fit an 80-column help page with "..."
    cli = build_cli(build_plugin_manager())
    cut = []
    for path, group in _groups(cli, "cargohold"):
        width = click.HelpFormatter(width=78).width
        limit = width - 6 - max(len(name) for name in group.commands)
        for name, command in group.commands.items():
            if command.hidden:
                continue
            summary = command.get_short_help_str(limit)
            if summary.endswith("...") or not summary:
                cut.append(f"{path} {name}: {command.help!r}")
    assert cut == []
