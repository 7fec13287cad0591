"""Finding a Docker volume plugin by name, exactly where the engine looks.

The engine (moby ``pkg/plugins/discovery.go``) tries, first match wins:

1. the unix sockets ``/run/docker/plugins/N.sock`` and ``/run/docker/plugins/N/N.sock``;
2. in ``/etc/docker/plugins`` then ``/usr/lib/docker/plugins``: ``N.spec``,
   ``N/N.spec``, ``N.json``, ``N/N.json``.

A ``.spec`` file holds one URL (``unix:///path.sock``, ``tcp://host:port`` or
``https://host:port``, which the engine dials without verifying the plugin's
certificate); a URL without a scheme is an error. A ``.json`` file
holds ``{"Addr": URL, "TLSConfig": {"CAFile", "CertFile", "KeyFile",
"InsecureSkipVerify"}}``; TLSConfig without a CAFile means no verification.

Tests and unusual hosts move the search with two environment variables:
``CARGOHOLD_PLUGIN_SOCKET_DIR`` (one directory) and
``CARGOHOLD_PLUGIN_SPEC_DIRS`` (directories separated by ``:``).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cargohold.core.api.errors import InvalidArgument, NotFound
from cargohold.core.volumes.names import validate_driver_name

SOCKET_DIR = Path("/run/docker/plugins")
SPEC_DIRS = (Path("/etc/docker/plugins"), Path("/usr/lib/docker/plugins"))
SOCKET_DIR_ENV = "CARGOHOLD_PLUGIN_SOCKET_DIR"
SPEC_DIRS_ENV = "CARGOHOLD_PLUGIN_SPEC_DIRS"

# Schemes the engine's plugin client can dial; tcp and http mean plain HTTP.
SCHEMES = ("unix", "tcp", "http", "https")


@dataclass(frozen=True)
class TLSSettings:
    """The ``TLSConfig`` of a ``.json`` plugin file."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class PluginAddress:
    """Where one plugin listens, and the file that said so."""

    name: str
    #: ``unix:///run/docker/plugins/x.sock``, ``tcp://h:p`` or ``https://h:p``
    url: str
    #: the socket or spec file that named this address
    source: Path | None = None
    tls: TLSSettings | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def socket_path(self) -> str:
        """The unix socket path (unix scheme only)."""
        parts = urlsplit(self.url)
        return parts.netloc + parts.path if parts.netloc else parts.path

    @property
    def host_port(self) -> tuple[str, int]:
        """Host and port (tcp, http and https schemes)."""
        parts = urlsplit(self.url)
        if parts.hostname is None or parts.port is None:
            raise InvalidArgument(f"plugin {self.name}: address {self.url!r} needs host:port")
        return parts.hostname, parts.port

    def describe(self) -> str:
        where = f" (from {self.source})" if self.source and self.scheme != "unix" else ""
        return f"{self.url}{where}"


def socket_dir() -> Path:
    configured = os.environ.get(SOCKET_DIR_ENV)
    return Path(configured) if configured else SOCKET_DIR


def spec_dirs() -> tuple[Path, ...]:
    configured = os.environ.get(SPEC_DIRS_ENV)
    if configured:
        return tuple(Path(p) for p in configured.split(":") if p)
    return SPEC_DIRS


def searched_dirs() -> tuple[Path, ...]:
    """The directories a plugin is looked for in, sockets first."""
    return (socket_dir(), *spec_dirs())


def candidate_paths(
    name: str, sockets: Path | None = None, specs: tuple[Path, ...] | None = None
) -> list[Path]:
    """Every path the engine tries for plugin ``name``, in its order."""
    sockets = socket_dir() if sockets is None else sockets
    specs = spec_dirs() if specs is None else specs
    paths = [sockets / f"{name}.sock", sockets / name / f"{name}.sock"]
    for base in specs:
        for ext in (".spec", ".json"):
            paths += [base / f"{name}{ext}", base / name / f"{name}{ext}"]
    return paths


def find_plugin(
    name: str, sockets: Path | None = None, specs: tuple[Path, ...] | None = None
) -> PluginAddress | None:
    """The address of plugin ``name``, or None when nothing names it.

    A spec file that exists but is malformed raises `InvalidArgument`, as the
    engine refuses it too, rather than falling through to the next place.
    """
    validate_driver_name(name)
    for path in candidate_paths(name, sockets, specs):
        if path.suffix == ".sock":
            if _is_socket(path):
                return PluginAddress(name, f"unix://{path}", source=path)
        elif path.is_file():
            if path.suffix == ".json":
                return read_json_spec(name, path)
            return read_spec(name, path)
    return None


def all_plugins(
    sockets: Path | None = None, specs: tuple[Path, ...] | None = None
) -> dict[str, PluginAddress | InvalidArgument]:
    """Every plugin the engine could find, by name: its address, or why its file is bad.

    Names come from the files in the places `find_plugin` searches; each is then
    found as `find_plugin` finds it, so the first match wins here too. Nothing
    is contacted: a plugin listed here may not be running.
    """
    sockets = socket_dir() if sockets is None else sockets
    specs = spec_dirs() if specs is None else specs
    names: set[str] = set()
    for base, suffixes in ((sockets, (".sock",)), *((d, (".spec", ".json")) for d in specs)):
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                if entry.suffix in suffixes:
                    names.add(entry.stem)
                elif any((entry / f"{entry.name}{s}").exists() for s in suffixes):
                    names.add(entry.name)  # N/N.sock, N/N.spec, N/N.json
    found: dict[str, PluginAddress | InvalidArgument] = {}
    for name in sorted(names):
        try:
            validate_driver_name(name)
        except InvalidArgument:
            continue  # no name `-d` could give (our private .cargohold directory, say)
        try:
            address = find_plugin(name, sockets, specs)
        except InvalidArgument as err:
            found[name] = err
            continue
        if address is not None:
            found[name] = address
    return found


def listing() -> list[dict[str, str]]:
    """`all_plugins` as rows: ``name``, and ``address`` (where it listens) or
    ``error`` (why its file cannot be used).

    Read off the plugin directories without contacting any plugin: a dead
    one's socket would cost the engine's 15 s of backoff.
    """
    rows: list[dict[str, str]] = []
    for name, found in all_plugins().items():
        if isinstance(found, InvalidArgument):
            rows.append({"name": name, "address": "", "error": str(found)})
        else:
            rows.append({"name": name, "address": found.describe(), "error": ""})
    return rows


def require_plugin(name: str) -> PluginAddress:
    """`find_plugin`, raising `NotFound` with every place that was searched."""
    found = find_plugin(name)
    if found is None:
        places = ", ".join(str(p) for p in candidate_paths(name))
        raise NotFound(
            f"no Docker volume plugin named {name!r}: looked for {places}; "
            "start the plugin, or give its socket path"
        )
    return found


def address_for(target: str) -> PluginAddress:
    """A plugin given by name, socket path or URL (as ``plugin check`` takes it)."""
    if "://" in target:
        return PluginAddress(_name_from_target(target), _checked_url(target, target))
    if "/" in target or target.endswith(".sock"):
        path = Path(target).absolute()
        if not _is_socket(path):
            raise NotFound(f"{path} is not a unix socket: is the plugin running?")
        return PluginAddress(_name_from_target(path.stem), f"unix://{path}", source=path)
    return require_plugin(target)


def read_spec(name: str, path: Path) -> PluginAddress:
    url = _checked_url(path.read_text().strip(), str(path))
    # As the engine (moby newLocalPlugin): a .spec file has no TLS settings, so an
    # https:// address is dialled without verifying the plugin; a .json file can verify.
    tls = TLSSettings(insecure_skip_verify=True) if urlsplit(url).scheme == "https" else None
    return PluginAddress(name, url, source=path, tls=tls)


def read_json_spec(name: str, path: Path) -> PluginAddress:
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"plugin file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Addr"), str):
        raise InvalidArgument(f'plugin file {path} needs {{"Addr": "unix://... or tcp://..."}}')
    url = _checked_url(data["Addr"], str(path))
    raw_tls = data.get("TLSConfig")
    tls: TLSSettings | None = None
    if isinstance(raw_tls, dict):
        ca = _optional_str(raw_tls, "CAFile", path)
        tls = TLSSettings(
            ca_file=ca,
            cert_file=_optional_str(raw_tls, "CertFile", path),
            key_file=_optional_str(raw_tls, "KeyFile", path),
            # As the engine: no CA file means the server is not verified.
            insecure_skip_verify=bool(raw_tls.get("InsecureSkipVerify")) or not ca,
        )
    elif raw_tls is not None:
        raise InvalidArgument(f"plugin file {path}: TLSConfig must be an object")
    return PluginAddress(name, url, source=path, tls=tls)


def _checked_url(url: str, origin: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise InvalidArgument(
            f"plugin address {url!r} in {origin} has no scheme: "
            "write unix:///path.sock, tcp://host:port or https://host:port"
        )
    if scheme not in SCHEMES:
        raise InvalidArgument(
            f"plugin address {url!r} in {origin}: scheme {scheme!r} is not one of "
            f"{', '.join(SCHEMES)}"
        )
    return url


def _optional_str(data: dict[str, object], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"plugin file {path}: TLSConfig.{key} must be a path")
    return value


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def _name_from_target(target: str) -> str:
    """A name for messages: the socket's stem, or the host of a TCP address."""
    parts = urlsplit(target)
    if parts.scheme in ("", "unix"):
        return Path(parts.path or target).stem or "plugin"
    return parts.hostname or "plugin"
