"""``cargohold build``: docker's classic builder, one image per Dockerfile step.

Each step starts from the image the step before made and gives a new one:
metadata steps (``ENV``, ``CMD``, ``LABEL``...) only a new config; ``RUN`` a
container of the runtime's container service, started, waited for and
committed (its changes become one layer through the snapshotter); ``COPY``,
``ADD`` and a ``WORKDIR`` that must be created write into a created (never
started) container's root filesystem, mounted, and commit it the same way.
Every step's image is remembered in the build cache (`cache`), so a second
build prints `` ---> Using cache`` for each step whose parent, instruction,
configuration and copied files are unchanged. The output is docker's.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cargohold.core.api.errors import CargoholdError, NotFound, NotSupported
from cargohold.core.images.build.cache import BuildCache, step_key
from cargohold.core.images.build.context import Context
from cargohold.core.images.build.copy import copy_into, in_root, owner
from cargohold.core.images.build.parser import (
    DockerfileError,
    Instruction,
    expand,
    key_values,
    parse,
    split_words,
)
from cargohold.core.images.config import normalize_reference
from cargohold.core.images.records import Image

if TYPE_CHECKING:
    from cargohold.core.runtime import Runtime

BUILD_LABEL = "cargohold.build"
DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass(frozen=True)
class BuildOptions:
    context: str
    dockerfile: str | None = None
    tags: Sequence[str] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    quiet: bool = False
    platform: str | None = None
    insecure: tuple[str, ...] = ()
    out: TextIO | None = None


def _check_order(instructions: list[Instruction], name: str) -> None:
    """One stage, ``FROM`` first (only ``ARG`` before it)."""
    if not instructions:
        raise DockerfileError(f"{name} has no instructions")
    froms = [i for i in instructions if i.name == "FROM"]
    if not froms:
        raise DockerfileError(f"{name} has no FROM instruction: start it with FROM image")
    if len(froms) > 1:
        raise NotSupported(
            f"{name} line {froms[1].line}: a second FROM (a multi-stage build) is not "
            "supported by cargohold build"
        )
    for inst in instructions:
        if inst.name == "FROM":
            break
        if inst.name != "ARG":
            raise inst.error("only ARG may come before FROM")


class Builder:
    def __init__(self, runtime: Runtime, options: BuildOptions) -> None:
        self.runtime = runtime
        self.options = options
        self.store = runtime.images
        self.out = options.out or sys.stdout
        self.context = Context(Path(options.context))
        self.cache = BuildCache(self.store)
        self.image: Image | None = None
        self.config: dict[str, Any] = {}
        self.args: dict[str, str] = {}  # ARGs declared in the stage, with their values
        self.meta_args: dict[str, str] = {}  # ARGs before FROM
        self.used_args: set[str] = set()
        self.cmd_set = False
        self.author = ""

    def say(self, text: str) -> None:
        if not self.options.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env(self) -> dict[str, str]:
        """What ``$VAR`` expands to: the ARGs, then the image's ENV over them."""
        values = dict(self.args)
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            values[key] = value
        return values

    def words(self, inst: Instruction) -> list[str]:
        if inst.json is not None:
            return [expand(w, self.env()) if inst.name != "RUN" else w for w in inst.json]
        return [expand(w, self.env()) for w in split_words(inst.args)]

    # -- the build --------------------------------------------------------------------

    def run(self) -> Image:
        path = self._dockerfile()
        instructions = parse(path.read_text(), str(path))
        _check_order(instructions, str(path))
        total = len(instructions)
        for number, inst in enumerate(instructions, 1):
            keyword, _, rest = inst.original.partition(" ")
            self.say(f"Step {number}/{total} : {keyword.upper()} {rest.strip()}".rstrip())
            try:
                getattr(self, f"_{inst.name.lower()}")(inst)
            except DockerfileError:
                raise
            except (CargoholdError, OSError) as err:
                raise _at_line(err, inst) from None
            if self.image is not None:  # (an ARG before FROM makes no image)
                self.say(f" ---> {self.image.short_id}")
        unused = sorted(set(self.options.build_args) - self.used_args)
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        assert self.image is not None
        self.say(f"Successfully built {self.image.short_id}")
        for tag in self.options.tags:
            self.store.tag(self.image.id, tag)
            self.say(f"Successfully tagged {normalize_reference(tag)}")
        return self.image

    def _dockerfile(self) -> Path:
        given = self.options.dockerfile
        path = Path(given) if given else self.context.root / "Dockerfile"
        if given and not path.is_absolute() and not path.exists():
            path = self.context.root / given
        if not path.is_file():
            raise NotFound(f"cannot find the Dockerfile {path}: give one with -f")
        return path

    def _commit(
        self,
        inst: Instruction,
        config: dict[str, Any],
        change: Callable[[], Image] | None = None,
        extra: str = "",
    ) -> None:
        """The step's image: from the cache, or made by ``change`` (a config-only image
        when None)."""
        assert self.image is not None
        key = step_key(self.image.id, inst.original, config, extra)
        hit = None if self.options.no_cache else self.cache.get(key)
        if hit is not None:
            self.say(" ---> Using cache")
            self.image = hit
            self.config = dict(hit.run_config)
            return
        made = change() if change is not None else self._config_image(self.image, config, inst)
        self.cache.put(key, made)
        self.image = made
        self.config = dict(made.run_config)

    def _config_image(self, base: Image, config: dict[str, Any], inst: Instruction) -> Image:
        return self.store.create_image(
            base,
            None,
            run_config=config,
            author=self.author,
            created_by=f"/bin/sh -c #(nop)  {inst.original}",
        )

    def _with_config(self, committed: Image, config: dict[str, Any], inst: Instruction) -> Image:
        """``committed`` with the step's config (a commit takes the container's own)."""
        final = self.store.create_image(
            committed, None, run_config=config, author=self.author, created_by=inst.original
        )
        self.store.remove(committed.id)
        return final

    # -- instructions -------------------------------------------------------------------

    def _from(self, inst: Instruction) -> None:
        words = split_words(inst.args)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise inst.error("write FROM image[:tag] [AS name]")
        name = expand(words[0], self.meta_args)
        if name == "scratch":
            self.image = self.store.create_image(None, None, created_by="scratch")
        else:
            self.image = self._base(name, inst.flags.get("platform") or self.options.platform)
        if self.image.run_config.get("OnBuild"):
            raise inst.error(f"{name} has ONBUILD triggers, which cargohold build does not run")
        self.config = dict(self.image.run_config)

    def _base(self, name: str, platform: str | None) -> Image:
        try:
            return self.store.get(name)
        except NotFound:
            pass
        from cargohold.core.images.layer_progress import LayerProgress
        from cargohold.core.images.pull import pull

        progress = LayerProgress(self.out, quiet=self.options.quiet)
        result = pull(
            self.runtime.state_dir,
            self.store,
            name,
            platform=platform,
            insecure=self.options.insecure,
            progress=progress,
        )
        return result.image

    def _arg(self, inst: Instruction) -> None:
        words = split_words(inst.args)
        values = self.meta_args if self.image is None else self.args
        for word in words:
            name, sep, default = word.partition("=")
            if name in self.options.build_args:
                self.used_args.add(name)
                values[name] = self.options.build_args[name]
            elif sep:
                values[name] = expand(default, {**self.meta_args, **self.env()})
            elif name in self.meta_args and self.image is not None:
                values[name] = self.meta_args[name]
        if self.image is not None:
            self._commit(inst, dict(self.config), extra=repr(sorted(self.args.items())))

    def _env(self, inst: Instruction) -> None:
        pairs = key_values(inst, self.env())
        env = list(self.config.get("Env") or [])
        for key, value in pairs:
            env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
        self._commit(inst, {**self.config, "Env": env})

    def _label(self, inst: Instruction) -> None:
        labels = dict(self.config.get("Labels") or {})
        labels.update(key_values(inst, self.env()))
        self._commit(inst, {**self.config, "Labels": labels})

    def _maintainer(self, inst: Instruction) -> None:
        self.author = inst.args
        self._commit(inst, dict(self.config))

    def _expose(self, inst: Instruction) -> None:
        ports = dict(self.config.get("ExposedPorts") or {})
        for word in self.words(inst):
            port, _, proto = word.partition("/")
            if not port.replace("-", "").isdigit():
                raise inst.error(f"invalid port {word!r}: write PORT[/tcp|udp]")
            ports[f"{port}/{proto or 'tcp'}"] = {}
        self._commit(inst, {**self.config, "ExposedPorts": ports})

    def _volume(self, inst: Instruction) -> None:
        volumes = dict(self.config.get("Volumes") or {})
        for path in self.words(inst):
            volumes[path] = {}
        self._commit(inst, {**self.config, "Volumes": volumes})

    def _user(self, inst: Instruction) -> None:
        self._commit(inst, {**self.config, "User": expand(inst.args, self.env())})

    def _stopsignal(self, inst: Instruction) -> None:
        self._commit(inst, {**self.config, "StopSignal": expand(inst.args, self.env())})

    def _shell(self, inst: Instruction) -> None:
        if not inst.json:
            raise inst.error('SHELL requires the arguments in JSON form: SHELL ["/bin/sh", "-c"]')
        self._commit(inst, {**self.config, "Shell": inst.json})

    def _command(self, inst: Instruction) -> list[str]:
        if inst.json is not None:
            return inst.json
        return [*self.shell, inst.args] if inst.args else []

    def _cmd(self, inst: Instruction) -> None:
        self.cmd_set = True
        self._commit(inst, {**self.config, "Cmd": self._command(inst)})

    def _entrypoint(self, inst: Instruction) -> None:
        config = {**self.config, "Entrypoint": self._command(inst) or None}
        if not self.cmd_set:
            config["Cmd"] = None  # a base image's CMD does not outlive a new ENTRYPOINT
        self._commit(inst, config)

    def _workdir(self, inst: Instruction) -> None:
        path = posixpath.normpath(
            posixpath.join(self.config.get("WorkingDir") or "/", expand(inst.args, self.env()))
        )
        config = {**self.config, "WorkingDir": path}

        def change() -> Image:
            def make(root: Path) -> bool:
                target = in_root(root, path)
                if target.is_dir():
                    return False
                target.mkdir(0o755, parents=True)
                return True

            return self._in_rootfs(inst, config, make)

        self._commit(inst, config, change)

    def _copy(self, inst: Instruction) -> None:
        if "chmod" in inst.flags:
            raise inst.error("--chmod needs BuildKit; the classic builder does not take it")
        words = self.words(inst)
        if len(words) < 2:
            raise inst.error(f"{inst.name} requires at least two arguments: SOURCE... DEST")
        *given, dest = words
        sources = self.context.sources(inst, given)
        wildcard = any(c in g for g in given for c in "*?[")
        workdir = self.config.get("WorkingDir") or "/"
        full_dest = posixpath.join(workdir, dest)
        if dest.endswith("/") and not full_dest.endswith("/"):
            full_dest += "/"
        chown = expand(inst.flags["chown"], self.env()) if "chown" in inst.flags else None
        checksum = self.context.checksum(sources)

        def change() -> Image:
            def write(root: Path) -> bool:
                ids = owner(root, chown, inst)
                copy_into(root, self.context, sources, full_dest, ids, inst, wildcard=wildcard)
                return True

            return self._in_rootfs(inst, dict(self.config), write)

        self._commit(inst, dict(self.config), change, extra=f"{checksum} {chown} {full_dest}")

    _add = _copy

    def _run(self, inst: Instruction) -> None:
        argv = self._command(inst)
        if not argv:
            raise inst.error("RUN needs a command")
        # build arguments are in the command's environment (and its cache key), not the image's
        args_env = [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in self._env_keys()]
        config = dict(self.config)

        def change() -> Image:
            return self._run_container(inst, argv, args_env, config)

        self._commit(inst, config, change, extra=repr(args_env))

    def _env_keys(self) -> set[str]:
        return {e.partition("=")[0] for e in self.config.get("Env") or []}

    # -- containers -------------------------------------------------------------------

    @contextlib.contextmanager
    def _container(self, command: list[str], env: list[str]) -> Iterator[Any]:
        """A container of the current image, removed (with its anonymous volumes) after."""
        assert self.image is not None
        containers = self.runtime.containers
        container = containers.create(
            self.image.id,
            command,
            entrypoint="",
            env=env,
            workdir=self.config.get("WorkingDir") or None,
            user=self.config.get("User") or "",
            network="host",
            labels={BUILD_LABEL: "1"},
        )
        try:
            yield container
        finally:
            with contextlib.suppress(CargoholdError):
                containers.remove(container.id, force=True, volumes=True)

    def _run_container(
        self, inst: Instruction, argv: list[str], env: list[str], config: dict[str, Any]
    ) -> Image:
        containers = self.runtime.containers
        with self._container(argv, env) as container:
            self.say(f" ---> Running in {container.short_id}")
            containers.start(container.id)
            for _, data in containers.logs(container.id, follow=True):
                if not self.options.quiet:
                    self.out.write(data.decode("utf-8", "replace"))
                    self.out.flush()
            code = containers.wait(container.id)
            if code != 0:
                shown = " ".join(argv) if inst.json is None else repr(argv).replace("'", '"')
                raise CargoholdError(f"The command '{shown}' returned a non-zero code: {code}")
            committed = containers.commit(container.id)
            self.say(f"Removing intermediate container {container.short_id}")
        return self._with_config(committed, config, inst)

    def _in_rootfs(
        self, inst: Instruction, config: dict[str, Any], change: Callable[[Path], bool]
    ) -> Image:
        """Run ``change`` on a created container's mounted root; commit if it changed."""
        from cargohold.core.kernel.snapshot_mounts import mounted

        assert self.image is not None
        containers = self.runtime.containers
        with self._container(["/bin/true"], []) as container:
            rootfs = container.rootfs
            if rootfs.snapshotter is None or rootfs.key is None:
                raise NotSupported("the container's root filesystem is not a snapshot")
            snapshotter = self.runtime.snapshotters.get(rootfs.snapshotter)
            work = containers.directory(container)
            with (
                tempfile.TemporaryDirectory(dir=work) as target,
                mounted(snapshotter.mounts(rootfs.key), target),
            ):
                changed = change(Path(target))
            if not changed:
                return self._config_image(self.image, config, inst)
            committed = containers.commit(container.id)
        return self._with_config(committed, config, inst)


def _at_line(err: Exception, inst: Instruction) -> CargoholdError:
    """``err`` with the Dockerfile line in front (an OSError becomes a CargoholdError)."""
    message = f"Dockerfile line {inst.line} ({inst.name}): {err}"
    if isinstance(err, CargoholdError):
        try:
            return type(err)(message)
        except TypeError:
            pass
    return CargoholdError(message)


def build(runtime: Runtime, options: BuildOptions) -> Image:
    """Build the Dockerfile in ``options``; the final image (tagged as asked)."""
    for tag in options.tags:
        normalize_reference(tag)  # a bad -t fails before any step runs
    builder = Builder(runtime, options)
    try:
        return builder.run()
    finally:
        builder.cache.close()


def build_arg_values(pairs: Sequence[str]) -> dict[str, str]:
    """``--build-arg K=V``, or ``K`` alone for the value in this environment (as docker)."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key:
            raise DockerfileError(f"bad --build-arg {pair!r}: write KEY=VALUE")
        if sep:
            values[key] = value
        elif key in os.environ:
            values[key] = os.environ[key]
    return values
