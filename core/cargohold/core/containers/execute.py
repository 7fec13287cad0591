"""``exec``: one more process in a running container's namespaces and root.

The process joins the container's PID, mount, UTS, IPC and network
namespaces (``setns``) and its root (``/proc/<pid>/root``), takes the
container's environment plus ``env``, and runs as ``user`` (by default the
container's) in ``workdir`` (by default the container's). It is a child of
the caller, which waits for it; it is not supervised beyond that, as with
Docker.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import termios
from collections.abc import Sequence
from dataclasses import dataclass

from cargohold.core.api.errors import Conflict
from cargohold.core.containers import procfs, runner
from cargohold.core.containers.records import Container
from cargohold.core.kernel.libc import libc, raise_errno

CLONE_NEWPID = runner.CLONE_NEWPID
#: joined in this order; the mount namespace last: the others are found through /proc
_NAMESPACES = (("ipc", 0x08000000), ("uts", 0x04000000), ("net", 0x40000000), ("mnt", 0x00020000))


@dataclass(frozen=True)
class ExecSpec:
    args: Sequence[str]
    env: Sequence[str] = ()
    user: str | None = None
    workdir: str | None = None
    tty: bool = False


def spawn(container: Container, spec: ExecSpec, stdin: int | None, stdout: int, stderr: int) -> int:
    """Start ``spec`` in ``container``; return its pid once it has exec'ed.

    Raises `runner.StartError` with Docker's codes (126, 127) when it cannot run.
    """
    st = container.state
    if not st.running or not procfs.alive(st.pid, st.pid_start):
        raise Conflict(f"container {container.id} is not running")
    if not spec.args:
        raise runner.StartError(runner.EXIT_RUNTIME, "no command given to exec")
    fds: list[int] = []
    try:
        for name, _ in (("pid", 0), *_NAMESPACES, ("root", 0)):
            where = f"/proc/{st.pid}/root" if name == "root" else f"/proc/{st.pid}/ns/{name}"
            fds.append(os.open(where, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as err:
        for fd in fds:
            os.close(fd)
        raise Conflict(f"container {container.id} is not running ({err.strerror})") from None
    pid_ns, *ns_fds, root_fd = fds
    env = dict(item.partition("=")[::2] for item in container.env)
    for item in spec.env:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    env.setdefault("PATH", runner.DEFAULT_PATH)
    env.setdefault("HOSTNAME", container.hostname)
    if spec.tty:
        env.setdefault("TERM", "xterm")
    user = container.user if spec.user is None else spec.user
    workdir = spec.workdir or container.workdir or "/"
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = -1
    try:
        # only this thread's next child goes to the container's PID namespace
        if libc.setns(pid_ns, CLONE_NEWPID) != 0:
            raise_errno("setns into the container's PID namespace")
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                libc.setns(own_pidns, CLONE_NEWPID)
        if pid == 0:
            _child(ns_fds, root_fd, spec, user, workdir, env, (stdin, stdout, stderr), write_end)
    finally:
        for fd in (*fds, own_pidns):
            os.close(fd)  # (the child never comes here: it execs or exits)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    if report:
        os.waitpid(pid, 0)
        code_text, _, message = report.decode(errors="replace").partition("\n")
        raise runner.StartError(int(code_text), message)
    return pid


def _child(
    ns_fds: Sequence[int],
    root_fd: int,
    spec: ExecSpec,
    user: str,
    workdir: str,
    env: dict[str, str],
    stdio: tuple[int | None, int, int],
    report_fd: int,
) -> None:
    """In the forked child: join, switch root and user, exec; report a failure, never return."""
    code = runner.EXIT_RUNTIME
    try:
        stdin, stdout, stderr = stdio
        if spec.tty:
            os.setsid()
        os.dup2(os.open(os.devnull, os.O_RDONLY) if stdin is None else stdin, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        if spec.tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for fd, (name, flag) in zip(ns_fds, _NAMESPACES, strict=True):
            if libc.setns(fd, flag) != 0:
                raise_errno(f"setns into the container's {name} namespace")
        os.fchdir(root_fd)
        os.chroot(".")
        uid, gid, groups, home = runner.resolve_user(user)
        env.setdefault("HOME", home)
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        try:
            os.chdir(workdir)
        except OSError as err:
            raise runner.StartError(
                runner.EXIT_CANNOT_EXECUTE, f"chdir to {workdir}: {err.strerror}"
            ) from None
        os.closerange(3, report_fd)
        os.closerange(report_fd + 1, 65536)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        runner.exec_args(list(spec.args), env)
    except BaseException as err:
        if isinstance(err, OSError | runner.StartError):
            message = str(err)
        else:
            import traceback

            message = traceback.format_exc()
        if isinstance(err, runner.StartError):
            code = err.exit_code
        with contextlib.suppress(OSError):
            os.write(report_fd, f"{code}\n{message}".encode()[:60000])
    os._exit(code)
