"""The volume service through `Runtime`: names, references, locks, prune, secrets, restarts.

Small drivers defined here count what the core asks of them, so each test can
show what reached the driver and what the core refused first.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cargohold.core import (
    CargoholdError,
    Conflict,
    DriverVolume,
    InUse,
    InvalidArgument,
    NotFound,
    Option,
    Runtime,
    VolumeDriver,
    hookimpl,
)
from cargohold.core.volumes.service import ANONYMOUS_LABEL


class CountingDriver(VolumeDriver):
    """Keeps each volume as a directory and counts calls (in memory and in a log file).

    The log file (``<root>/calls.log``, one line per call, O_APPEND) lets
    several processes' calls be counted together.
    """

    name = "counting"
    options = (
        Option("flavour", choices=("plain", "salted"), default="plain", help="what kind"),
        Option("size", type="size", help="a size"),
    )
    slow = 0.0

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.calls: list[tuple[str, str]] = []
        self.received: dict[str, Mapping[str, Any]] = {}

    def _note(self, call: str, name: str) -> None:
        self.calls.append((call, name))
        fd = os.open(self.root / "calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{call} {name}\n".encode())
        finally:
            os.close(fd)
        if self.slow:
            time.sleep(self.slow)  # widen the window a missing lock would leave open

    def count(self, call: str) -> int:
        return sum(1 for c, _ in self.calls if c == call)

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        self._note("create", name)
        self.received[name] = dict(opts)
        (self.root / "vols" / name).mkdir(parents=True, exist_ok=True)

    def remove(self, name: str, opts: Mapping[str, Any]) -> None:
        self._note("remove", name)
        if not (self.root / "vols" / name).is_dir():
            raise NotFound(f"no such volume: {name}")
        shutil.rmtree(self.root / "vols" / name)

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        self._note("mount", name)
        return self.root / "vols" / name

    def unmount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> None:
        self._note("unmount", name)

    def get(self, name: str) -> DriverVolume:
        path = self.root / "vols" / name
        if not path.is_dir():
            raise NotFound(f"no such volume: {name}")
        return DriverVolume(name, path)

    def list(self) -> list[DriverVolume]:
        vols = self.root / "vols"
        return [DriverVolume(p.name, p) for p in vols.iterdir()] if vols.is_dir() else []


class OtherDriver(CountingDriver):
    name = "other"


class StrictDriver(CountingDriver):
    name = "strict"
    options = (Option("region", required=True, help="where the data lives"),)


class SecretDriver(CountingDriver):
    """Takes a password; fails loudly, password in the message, when told to."""

    name = "secretive"
    options = (
        Option("user", help="login"),
        Option("password", secret=True, required=True, help="password reference"),
        Option("fail", type="bool", default=False, help="raise on create and mount"),
    )

    def create(self, name: str, opts: Mapping[str, Any]) -> None:
        if opts["fail"]:
            raise RuntimeError(f"login as {opts['user']} with password {opts['password']} denied")
        super().create(name, opts)

    def mount(self, name: str, mount_id: str, opts: Mapping[str, Any]) -> Path:
        if (self.root / "fail-mounts").exists():
            raise CargoholdError(f"server said: bad password {opts['password']!r}")
        return super().mount(name, mount_id, opts)


class TestDrivers:
    @hookimpl
    def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
        return [CountingDriver, OtherDriver, StrictDriver, SecretDriver]


def make_runtime(state_dir: Path) -> Runtime:
    return Runtime(state_dir, plugins=[TestDrivers()])


@pytest.fixture
def rt(state_dir: Path) -> Iterator[Runtime]:
    with make_runtime(state_dir) as runtime:
        yield runtime


def counting(rt: Runtime, name: str = "counting") -> CountingDriver:
    driver = rt.drivers.get(name)
    assert isinstance(driver, CountingDriver)
    return driver


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


# -- names -------------------------------------------------------------------

BAD_NAMES = ["../x", "a/b", "", "a", "x" * 300, "nul\0byte", "..", "-lead", ".hidden", "sp ace"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_bad_names_are_refused_before_anything_is_written(rt: Runtime, bad: str) -> None:
    before = files_under(rt.state_dir)
    with pytest.raises(InvalidArgument, match="volume name") as caught:
        rt.volumes.create(bad, "counting")
    assert "\0" not in str(caught.value)
    assert len(str(caught.value)) < 300  # a 300-character name is not echoed whole
    assert rt.volumes.list() == []
    assert files_under(rt.state_dir) == before
    assert counting(rt).calls == []
    for operation in (rt.volumes.get, rt.volumes.remove):
        with pytest.raises(InvalidArgument):
            operation(bad)
    with pytest.raises(InvalidArgument):
        rt.volumes.mount(bad, "c1")


def test_good_names_of_docker_shape_work(rt: Runtime) -> None:
    for name in ("ab", "my_vol.1-x", "9lives", "x" * 255):
        assert rt.volumes.create(name, "counting").name == name
    assert len(rt.volumes.list()) == 4


# -- anonymous volumes and labels --------------------------------------------


def test_anonymous_volume_gets_hex_name_and_label(rt: Runtime) -> None:
    volume = rt.volumes.create(None, "counting", labels={"app": "web"}, anonymous=True)
    assert len(volume.name) == 64 and set(volume.name) <= set("0123456789abcdef")
    assert volume.labels == {"app": "web", ANONYMOUS_LABEL: ""}
    assert volume.anonymous
    unnamed = rt.volumes.create(None, "counting")
    assert len(unnamed.name) == 64 and unnamed.name != volume.name
    assert not unnamed.anonymous


def test_labels_are_kept_and_filterable(rt: Runtime) -> None:
    rt.volumes.create("prod-db", "counting", labels={"env": "prod", "tier": "db"})
    rt.volumes.create("dev-db", "counting", labels={"env": "dev", "tier": "db"})
    rt.volumes.create("bare", "other")
    assert rt.volumes.get("prod-db").labels == {"env": "prod", "tier": "db"}

    def names(**filters: set[str]) -> list[str]:
        return [v.name for v in rt.volumes.list(dict(filters))]

    assert names(label={"tier=db"}) == ["dev-db", "prod-db"]
    assert names(label={"env=prod", "tier"}) == ["prod-db"]
    assert names(**{"label!": {"env=prod"}}) == ["bare", "dev-db"]
    assert names(driver={"other"}) == ["bare"]
    assert names(name={"db"}) == ["dev-db", "prod-db"]


def test_labels_and_options_must_be_strings(rt: Runtime) -> None:
    with pytest.raises(InvalidArgument, match="label"):
        rt.volumes.create("v1", "counting", labels={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument, match="NUL"):
        rt.volumes.create("v1", "counting", opts={"flavour": "pl\0ain"})
    assert rt.volumes.list() == [] and counting(rt).calls == []


# -- references --------------------------------------------------------------


def test_same_mount_id_twice_counts_twice(rt: Runtime) -> None:
    rt.volumes.create("shared", "counting")
    driver = counting(rt)
    first = rt.volumes.mount("shared", "c1")
    assert rt.volumes.mount("shared", "c1") == first
    assert rt.volumes.mount("shared", "c2") == first
    assert driver.count("mount") == 1  # only the first reference reaches the driver
    assert rt.volumes.get("shared").refs == {"c1": 2, "c2": 1}
    assert rt.volumes.path("shared") == first

    rt.volumes.unmount("shared", "c1")
    rt.volumes.unmount("shared", "c2")
    assert driver.count("unmount") == 0
    assert rt.volumes.get("shared").refs == {"c1": 1}
    rt.volumes.unmount("shared", "nobody")  # an unknown id is no error and changes nothing
    assert rt.volumes.get("shared").ref_count == 1
    rt.volumes.unmount("shared", "c1")
    assert driver.count("unmount") == 1
    assert rt.volumes.get("shared").refs == {}
    assert rt.volumes.path("shared") is None


def test_bad_mount_ids_are_refused(rt: Runtime) -> None:
    rt.volumes.create("v1", "counting")
    for bad in ("", "x" * 257):
        with pytest.raises(InvalidArgument, match="mount id"):
            rt.volumes.mount("v1", bad)
    assert rt.volumes.get("v1").refs == {}
    with pytest.raises(NotFound, match="no such volume: ghost"):
        rt.volumes.mount("ghost", "c1")


def test_remove_is_refused_in_use_even_with_force(rt: Runtime) -> None:
    rt.volumes.create("busy", "counting")
    rt.volumes.mount("busy", "container-1")
    for force in (False, True):
        with pytest.raises(InUse, match=r"busy is in use - \[container-1\]"):
            rt.volumes.remove("busy", force=force)
    assert counting(rt).count("remove") == 0
    assert rt.volumes.get("busy").ref_count == 1
    rt.volumes.unmount("busy", "container-1")
    rt.volumes.remove("busy")
    assert counting(rt).count("remove") == 1
    with pytest.raises(NotFound, match="no such volume: busy"):
        rt.volumes.get("busy")


def test_remove_missing_volume(rt: Runtime) -> None:
    with pytest.raises(NotFound, match="no such volume: ghost"):
        rt.volumes.remove("ghost")
    rt.volumes.remove("ghost", force=True)  # force: a missing volume is no error


# -- prune -------------------------------------------------------------------


@pytest.fixture
def prune_set(rt: Runtime) -> Runtime:
    rt.volumes.create("named-keep", "counting", labels={"keep": "yes"})
    rt.volumes.create("named-drop", "counting", labels={"env": "tmp"})
    rt.volumes.create("anon1", "counting", labels={"env": "tmp"}, anonymous=True)
    rt.volumes.create("anon2", "counting", labels={"keep": "yes"}, anonymous=True)
    rt.volumes.create("anon-busy", "counting", anonymous=True)
    rt.volumes.create("named-busy", "counting")
    rt.volumes.mount("anon-busy", "c1")
    rt.volumes.mount("named-busy", "c1")
    return rt


def remaining(rt: Runtime) -> list[str]:
    return [v.name for v in rt.volumes.list()]


def test_prune_default_removes_only_unused_anonymous(prune_set: Runtime) -> None:
    report = prune_set.volumes.prune()
    assert sorted(report.removed) == ["anon1", "anon2"]
    assert remaining(prune_set) == ["anon-busy", "named-busy", "named-drop", "named-keep"]
    assert counting(prune_set).count("remove") == 2


def test_prune_all_also_removes_named_but_never_used(prune_set: Runtime) -> None:
    report = prune_set.volumes.prune({"all": {"true"}})
    assert sorted(report.removed) == ["anon1", "anon2", "named-drop", "named-keep"]
    assert remaining(prune_set) == ["anon-busy", "named-busy"]


def test_prune_with_label_filters(prune_set: Runtime) -> None:
    assert prune_set.volumes.prune({"all": {"1"}, "label": {"env=tmp"}}).removed == [
        "anon1",
        "named-drop",
    ]
    assert prune_set.volumes.prune({"all": {"true"}, "label!": {"keep"}}).removed == []
    assert prune_set.volumes.prune({"label": {"keep=yes"}}).removed == ["anon2"]
    assert remaining(prune_set) == ["anon-busy", "named-busy", "named-keep"]


def test_prune_dangling_filter(prune_set: Runtime) -> None:
    # prune only removes unused volumes: dangling=false leaves it nothing to remove
    assert prune_set.volumes.prune({"all": {"true"}, "dangling": {"false"}}).removed == []
    assert sorted(prune_set.volumes.prune({"dangling": {"true"}}).removed) == ["anon1", "anon2"]
    assert remaining(prune_set) == ["anon-busy", "named-busy", "named-drop", "named-keep"]


def test_dangling_filter_lists_unused(prune_set: Runtime) -> None:
    dangling = [v.name for v in prune_set.volumes.list({"dangling": {"true"}})]
    used = [v.name for v in prune_set.volumes.list({"dangling": {"false"}})]
    assert dangling == ["anon1", "anon2", "named-drop", "named-keep"]
    assert used == ["anon-busy", "named-busy"]


# -- create on what exists ---------------------------------------------------


def test_create_again_same_settings_is_idempotent(rt: Runtime) -> None:
    first = rt.volumes.create("v1", "counting", {"flavour": "salted"}, {"a": "1"})
    again = rt.volumes.create("v1", "counting", {"flavour": "salted"}, {"a": "1"})
    assert again.name == first.name and again.created_at == first.created_at
    # asking nothing accepts what exists, as docker run -v v1:/x does
    assert rt.volumes.create("v1", "counting").options == {"flavour": "salted"}
    assert counting(rt).count("create") == 1


def test_create_again_with_other_settings_names_the_difference(rt: Runtime) -> None:
    rt.volumes.create("v1", "counting", {"flavour": "salted"}, {"a": "1"})
    with pytest.raises(Conflict, match=r"option flavour is 'salted', asked 'plain'"):
        rt.volumes.create("v1", "counting", {"flavour": "plain"})
    with pytest.raises(Conflict, match=r"label a is '1', asked '2'.*label b is unset, asked 'x'"):
        rt.volumes.create("v1", "counting", labels={"a": "2", "b": "x"})
    assert counting(rt).count("create") == 1
    assert rt.volumes.get("v1").labels == {"a": "1"}


def test_same_name_on_another_driver_is_a_conflict(rt: Runtime) -> None:
    rt.volumes.create("v1", "counting")
    with pytest.raises(Conflict, match="driver 'counting' already has volume 'v1'"):
        rt.volumes.create("v1", "other")
    assert counting(rt, "other").calls == []
    assert rt.volumes.get("v1").driver == "counting"


# -- options -----------------------------------------------------------------


def test_unknown_option_refused_before_driver(rt: Runtime) -> None:
    with pytest.raises(
        InvalidArgument, match=r"invalid option 'colour' for driver counting.*-o help"
    ):
        rt.volumes.create("v1", "counting", {"colour": "red"})
    with pytest.raises(InvalidArgument, match=r"flavour='spicy' is not one of: plain, salted"):
        rt.volumes.create("v1", "counting", {"flavour": "spicy"})
    with pytest.raises(InvalidArgument, match="option size: 'lots' is not a size"):
        rt.volumes.create("v1", "counting", {"size": "lots"})
    assert counting(rt).calls == [] and rt.volumes.list() == []


def test_missing_required_option_refused_before_driver(rt: Runtime) -> None:
    with pytest.raises(InvalidArgument, match="driver strict needs option region"):
        rt.volumes.create("v1", "strict")
    assert counting(rt, "strict").calls == [] and rt.volumes.list() == []


def test_driver_receives_converted_options_with_defaults(rt: Runtime) -> None:
    volume = rt.volumes.create("v1", "counting", {"size": "2m"})
    assert counting(rt).received["v1"] == {"flavour": "plain", "size": 2 * 1024 * 1024}
    assert volume.options == {"size": "2m"}  # inspect shows what the user wrote


def test_unknown_driver_is_not_found(rt: Runtime) -> None:
    with pytest.raises(NotFound, match=r"no volume driver named 'nope'.*counting"):
        rt.volumes.create("v1", "nope")
    assert rt.volumes.list() == []


def test_validate_hook_can_veto(state_dir: Path) -> None:
    seen: list[Mapping[str, Any]] = []

    class NoProd:
        @hookimpl
        def cargohold_validate_volume(
            self, name: str, driver: str, opts: Mapping[str, Any]
        ) -> None:
            seen.append(opts)
            if name.startswith("prod"):
                raise InvalidArgument(f"volume {name}: prod volumes are made by the ops team")

    with Runtime(state_dir, plugins=[TestDrivers(), NoProd()]) as rt:
        with pytest.raises(InvalidArgument, match="ops team"):
            rt.volumes.create("prod-1", "counting", {"size": "1k"})
        assert counting(rt).calls == [] and rt.volumes.list() == []
        rt.volumes.create("dev-1", "counting")
    assert seen[0] == {"flavour": "plain", "size": 1024}


# -- secrets -----------------------------------------------------------------

SECRET = "s3cr3t-Pa55word-never-shown"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CARGOHOLD_TEST_PASSWORD", SECRET)
    return "env:CARGOHOLD_TEST_PASSWORD"


def state_bytes(state_dir: Path) -> bytes:
    """Every byte cargohold wrote: the database, its WAL, locks, driver data."""
    return b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file())


def test_env_and_file_secrets_reach_the_driver_only(
    rt: Runtime, secret_env: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("file-" + SECRET + "\n")
    rt.volumes.create("by-env", "secretive", {"user": "amy", "password": secret_env})
    rt.volumes.create("by-file", "secretive", {"password": f"file:{secret_file}"})
    driver = counting(rt, "secretive")
    assert driver.received["by-env"]["password"] == SECRET
    assert driver.received["by-file"]["password"] == "file-" + SECRET

    inspected = rt.volumes.get("by-env")
    assert inspected.options == {"user": "amy", "password": secret_env}
    shown = repr(inspected) + repr(rt.volumes.list())
    assert SECRET not in shown
    rt.volumes.mount("by-env", "c1")
    rt.close()
    assert SECRET.encode() not in state_bytes(rt.state_dir)


def test_driver_errors_are_masked(
    rt: Runtime, secret_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with pytest.raises(CargoholdError) as caught:
        rt.volumes.create("v1", "secretive", {"user": "amy", "password": secret_env, "fail": "1"})
    message = str(caught.value)
    assert "login as amy with password ******** denied" in message
    assert SECRET not in message and caught.value.__cause__ is None
    assert SECRET not in repr(caught.value.__context__)  # the original is masked too
    assert rt.volumes.list() == []

    rt.volumes.create("v2", "secretive", {"password": secret_env})
    (counting(rt, "secretive").root / "fail-mounts").touch()
    with pytest.raises(CargoholdError, match=r"bad password '\*+'") as caught:
        rt.volumes.mount("v2", "c1")
    assert SECRET not in str(caught.value)
    assert rt.volumes.get("v2").refs == {}
    rt.volumes.remove("v2")
    assert SECRET not in caplog.text  # nor in anything logged on the way


def test_literal_secret_is_refused_without_echo(rt: Runtime, secret_env: str) -> None:
    for literal in (SECRET, "abc:" + SECRET):
        with pytest.raises(InvalidArgument, match="password is secret") as caught:
            rt.volumes.create("v1", "secretive", {"password": literal})
        assert SECRET not in str(caught.value)
    assert rt.volumes.list() == [] and counting(rt, "secretive").calls == []
    # nor when the volume exists and the create differs only in the secret
    rt.volumes.create("v1", "secretive", {"password": secret_env})
    with pytest.raises(Conflict, match="option password") as caught:
        rt.volumes.create("v1", "secretive", {"password": SECRET})
    assert SECRET not in str(caught.value)


def test_missing_secret_reference_names_the_reference(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="env:CARGOHOLD_NO_SUCH_VAR"):
        rt.volumes.create("v1", "secretive", {"password": "env:CARGOHOLD_NO_SUCH_VAR"})
    with pytest.raises(NotFound, match="file:"):
        rt.volumes.create("v1", "secretive", {"password": f"file:{tmp_path}/missing"})
    assert rt.volumes.list() == []


def test_secret_hook_from_a_plugin(state_dir: Path) -> None:
    class Vault:
        @hookimpl
        def cargohold_resolve_secret(self, ref: str) -> str | None:
            return SECRET if ref == "vault:db/password" else None

    with Runtime(state_dir, plugins=[TestDrivers(), Vault()]) as rt:
        rt.volumes.create("v1", "secretive", {"password": "vault:db/password"})
        assert counting(rt, "secretive").received["v1"]["password"] == SECRET


# -- restart -----------------------------------------------------------------


def test_restart_keeps_volumes_labels_options_references(state_dir: Path, secret_env: str) -> None:
    with make_runtime(state_dir) as rt:
        rt.volumes.create("v1", "counting", {"flavour": "salted"}, {"team": "a"})
        rt.volumes.create("v2", "secretive", {"password": secret_env})
        anon = rt.volumes.create(None, "counting", anonymous=True).name
        rt.volumes.mount("v1", "c1")
        rt.volumes.mount("v1", "c1")
        rt.volumes.mount("v2", "c9")
        before = {v.name: v for v in rt.volumes.list()}
    with make_runtime(state_dir) as rt:
        after = {v.name: v for v in rt.volumes.list()}
        assert after == before
        assert after["v1"].refs == {"c1": 2}
        assert after["v1"].options == {"flavour": "salted"}
        assert after["v1"].labels == {"team": "a"}
        assert after[anon].anonymous
        # references survive: still in use, and the last unmount reaches the driver
        with pytest.raises(InUse):
            rt.volumes.remove("v1")
        rt.volumes.unmount("v1", "c1")
        rt.volumes.unmount("v1", "c1")
        assert counting(rt).count("unmount") == 1
        rt.volumes.remove("v1")


def test_volume_of_a_missing_driver_still_lists(state_dir: Path) -> None:
    with make_runtime(state_dir) as rt:
        rt.volumes.create("orphan", "counting")
    with Runtime(state_dir) as rt:  # the plugin providing `counting` is gone
        rt.volumes.create("v1", "local")
        assert [v.name for v in rt.volumes.list()] == ["orphan", "v1"]
        with pytest.raises(NotFound, match="no volume driver named 'counting'"):
            rt.volumes.remove("orphan")


def test_state_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere"
    monkeypatch.setenv("CARGOHOLD_STATE_DIR", str(target))
    with Runtime() as rt:
        assert rt.state_dir == target
        rt.volumes.create("v1", "local")
    assert (target / "state.db").is_file()
    assert (target / "drivers" / "local" / "v1" / "_data").is_dir()


# -- locks -------------------------------------------------------------------


def test_threads_keep_counts_exact(rt: Runtime) -> None:
    CountingDriver.slow = 0.002
    try:
        rt.volumes.create("hot", "counting")
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            try:
                for _ in range(5):
                    rt.volumes.mount("hot", f"t{index}")
                for _ in range(5):
                    rt.volumes.unmount("hot", f"t{index}")
                rt.volumes.mount("hot", f"t{index}")
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        refs = rt.volumes.get("hot").refs
        assert refs == {f"t{i}": 1 for i in range(6)}
        driver = counting(rt)
        # the driver hears mount/unmount only at the edges, alternating, never doubled
        edges = [c for c, _ in driver.calls if c in ("mount", "unmount")]
        assert edges[0] == "mount" and edges[-1] == "mount"
        assert all(a != b for a, b in itertools.pairwise(edges))
    finally:
        CountingDriver.slow = 0.0


def _process_worker(state_dir: str, index: int, rounds: int) -> None:
    CountingDriver.slow = 0.002
    with make_runtime(Path(state_dir)) as rt:
        rt.volumes.create("contended", "counting", labels={"by": "both"})
        for round_ in range(rounds):
            rt.volumes.mount("contended", "shared-id")
            rt.volumes.mount("contended", f"p{index}")
            if round_ % 2:
                rt.volumes.unmount("contended", f"p{index}")


def test_processes_keep_counts_exact(state_dir: Path) -> None:
    make_runtime(state_dir).close()  # the schema exists before the race starts
    context = multiprocessing.get_context("fork")
    rounds = 10
    workers = [
        context.Process(target=_process_worker, args=(str(state_dir), i, rounds)) for i in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    with make_runtime(state_dir) as rt:
        volume = rt.volumes.get("contended")
        assert volume.refs == {"shared-id": 3 * rounds, **{f"p{i}": rounds // 2 for i in range(3)}}
        log = (counting(rt).root / "calls.log").read_text().split("\n")
        assert log.count("create contended") == 1  # exactly one process created it
        assert log.count("mount contended") == 1  # and only the first reference mounted


def test_failed_or_refused_work_leaves_no_trace(rt: Runtime, secret_env: str) -> None:
    """A failing driver create, a removed or a missing volume: no record, no data, no lock file."""
    for driver in ("secretive", "other"):
        rt.drivers.get(driver)  # their data areas are made on first use
    rt.volumes.create("warm", "counting")
    rt.volumes.remove("warm")
    before = files_under(rt.state_dir)
    with pytest.raises(CargoholdError, match="denied"):
        rt.volumes.create("v1", "secretive", {"user": "u", "password": secret_env, "fail": "1"})
    with pytest.raises(NotFound):
        rt.volumes.remove("ghost")
    rt.volumes.remove("ghost", force=True)
    with pytest.raises(NotFound):
        rt.volumes.mount("ghost", "c1")
    rt.volumes.create("v2", "counting")
    with pytest.raises(Conflict, match="driver 'counting' already has volume 'v2'"):
        rt.volumes.create("v2", "other")
    assert (rt.state_dir / "locks" / "v2").exists()  # kept while the volume lives
    rt.volumes.remove("v2")
    assert rt.volumes.list() == []
    assert files_under(rt.state_dir) == before


class Watchful(CountingDriver):
    """Counts calls that overlap: the core's lock must keep them apart."""

    name = "watchful"
    guard = threading.Lock()
    inside = 0
    overlaps = 0

    def _note(self, call: str, name: str) -> None:
        with self.guard:
            Watchful.inside += 1
            Watchful.overlaps += Watchful.inside > 1
        try:
            super()._note(call, name)
        finally:
            with self.guard:
                Watchful.inside -= 1


def test_lock_files_come_and_go_without_splitting_a_lock(state_dir: Path) -> None:
    class Provides:
        @hookimpl
        def cargohold_volume_drivers(self) -> list[type[VolumeDriver]]:
            return [Watchful]

    Watchful.slow, Watchful.overlaps = 0.001, 0
    errors: list[BaseException] = []
    with Runtime(state_dir, plugins=[Provides()]) as rt:

        def worker(index: int) -> None:
            try:
                for _ in range(15):
                    rt.volumes.create("churn", "watchful")
                    try:
                        rt.volumes.mount("churn", f"t{index}")
                    except NotFound:
                        continue  # another thread removed it between our calls
                    rt.volumes.unmount("churn", f"t{index}")
                    with contextlib.suppress(InUse):  # another thread has it mounted
                        rt.volumes.remove("churn", force=True)
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and Watchful.overlaps == 0
        rt.volumes.remove("churn", force=True)
        assert rt.volumes.list() == []
        assert list((state_dir / "locks").iterdir()) == []


def test_locks_are_per_volume(rt: Runtime) -> None:
    rt.volumes.create("slow", "counting")
    rt.volumes.create("fast", "counting")
    with rt.volumes.locks.hold("slow"):
        done = threading.Event()
        t = threading.Thread(target=lambda: (rt.volumes.mount("fast", "c1"), done.set()))
        t.start()
        assert done.wait(10), "a lock on one volume blocked another"
        blocked = threading.Thread(target=rt.volumes.mount, args=("slow", "c1"))
        blocked.start()
        blocked.join(0.3)
        assert blocked.is_alive(), "mount went ahead while the volume's lock was held"
    blocked.join(10)
    t.join(10)
    assert rt.volumes.get("slow").refs == {"c1": 1}
