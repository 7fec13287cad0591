"""The namespace runner: one container process in new namespaces, pivot_root'ed.

`spawn` forks a child that becomes PID 1 of a new PID namespace, with new
mount, UTS and IPC namespaces (and a new network namespace for ``none``). In
its private mount namespace the child mounts the root filesystem, the
container's mounts, a minimal /dev, /proc and /sys, pivots into the root and
execs the command. Every mount lives only in that namespace, so nothing leaks
on the host when the container ends, however it ends.

Failures before exec travel back on a close-on-exec pipe with Docker's exit
codes: 127 (command not found), 126 (cannot execute), 125 (runtime error).
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import struct
import termios
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from cargohold.core.api.container_mounts import PreparedMount
from cargohold.core.kernel import mounts
from cargohold.core.kernel.libc import libc, raise_errno

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[os.uname().machine]

EXIT_RUNTIME = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sys(result: int, what: str) -> None:
    if result != 0:
        raise_errno(what)


class ProcessSpec(NamedTuple):  # (a dataclass costs every run ~1 ms to define)
    """Everything the runner needs; built by the container service.

    ``mount_rootfs(path)`` mounts the root filesystem on the empty directory
    ``path`` (it runs inside the new mount namespace).
    """

    args: Sequence[str]
    mount_rootfs: Callable[[Path], None]
    rootfs_dir: Path
    env: Sequence[str] = ()
    workdir: str = "/"
    user: str = ""
    hostname: str = "cargohold"
    network: str = "none"
    readonly: bool = False
    mounts: Sequence[PreparedMount] = ()
    #: stdin, stdout and stderr are a terminal's slave: make it the controlling one
    tty: bool = False


class StartError(Exception):
    """The process could not be started; ``exit_code`` is Docker's code for why."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def spawn(spec: ProcessSpec, stdout: int, stderr: int, stdin: int | None = None) -> int:
    """Start the container process; return its host pid once it has exec'ed.

    ``stdin`` None is /dev/null (no ``-i``), as Docker's.

    Raises `StartError` (the child already reaped) when it could not run.
    """
    if not spec.args:
        raise StartError(EXIT_RUNTIME, "no command given and the image has none")
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC
    if spec.network == "none":
        flags |= CLONE_NEWNET
    # Our own PID namespace stays ours: only the next child goes to the new one.
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _sys(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                _sys(libc.setns(own_pidns, CLONE_NEWPID), "setns back to our PID namespace")
    finally:
        os.close(own_pidns)
    if pid == 0:  # the container process
        os.close(read_end)
        code = EXIT_RUNTIME
        try:
            if spec.tty:
                os.setsid()  # a session of its own, so the terminal can be its controlling one
            os.dup2(os.open(os.devnull, os.O_RDONLY) if stdin is None else stdin, 0)
            os.dup2(stdout, 1)
            os.dup2(stderr, 2)
            if spec.tty:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            _sys(libc.unshare(flags), "unshare of the container namespaces")
            code = _enter(spec, write_end)
        except BaseException as err:  # report anything, then leave without cleanup
            if isinstance(err, OSError | StartError):
                message = str(err)
            else:
                import traceback  # (only for a bug: not worth every start's import)

                message = traceback.format_exc()
            if isinstance(err, StartError):
                code = err.exit_code
            try:
                os.write(write_end, f"{code}\n{message}".encode()[:60000])
            finally:
                os._exit(code)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    if report:
        os.waitpid(pid, 0)
        code_text, _, message = report.decode(errors="replace").partition("\n")
        raise StartError(int(code_text), message)
    return pid


def exit_code_of(status: int) -> int:
    """A wait status as Docker reports it: the code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


# -- inside the child ---------------------------------------------------------


def _enter(spec: ProcessSpec, report_fd: int) -> int:
    root = spec.rootfs_dir
    # Nothing we mount may propagate back to the host.
    mounts.mount("none", "/", None, mounts.MS_REC | mounts.MS_PRIVATE)
    spec.mount_rootfs(root)
    mounts.bind(root, root)  # pivot_root needs a mount point; --read-only remounts this one
    _mount_system(root, spec.network)
    for prepared in sorted(spec.mounts, key=lambda m: m.target.count("/")):
        _mount_one(root, prepared)
    os.chdir(root)
    _sys(libc.syscall(_SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    mounts.umount(".", detach=True)
    os.chdir("/")
    hostname = spec.hostname.encode()
    _sys(libc.sethostname(hostname, len(hostname)), "sethostname")
    if spec.network == "none":
        _loopback_up()
    env = _environment(spec)
    uid, gid, groups, home = resolve_user(spec.user)
    env.setdefault("HOME", home)
    _make_workdir(spec.workdir, uid, gid)
    if spec.readonly:  # after the working directory is made, as runc does
        mounts.mount("none", "/", None, mounts.MS_BIND | mounts.MS_REMOUNT | mounts.MS_RDONLY)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    os.chdir(spec.workdir or "/")
    os.closerange(3, report_fd)
    os.closerange(report_fd + 1, 65536)
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    exec_args(list(spec.args), env)
    return EXIT_RUNTIME  # not reached


def exec_args(args: list[str], env: dict[str, str]) -> None:
    try:
        if "/" in args[0]:
            os.execve(args[0], args, env)
        os.execvpe(args[0], args, env)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            where = "" if "/" in args[0] else " in $PATH"
            raise StartError(
                EXIT_NOT_FOUND, f'exec: "{args[0]}": executable file not found{where}'
            ) from None
        if err.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
            raise StartError(
                EXIT_CANNOT_EXECUTE, f'exec: "{args[0]}": cannot execute: {err.strerror}'
            ) from None
        raise


def _environment(spec: ProcessSpec) -> dict[str, str]:
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": spec.hostname}
    for item in spec.env:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


def _make_workdir(workdir: str, uid: int, gid: int) -> None:
    if workdir and not os.path.isdir(workdir):
        try:
            os.makedirs(workdir, mode=0o755, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StartError(
                EXIT_RUNTIME,
                f"working directory {workdir} is not a directory in the container; "
                "choose another with -w",
            ) from None
        os.chown(workdir, uid, gid)


def _mount_system(root: Path, network: str) -> None:
    nosuid_nodev = mounts.MS_NOSUID | mounts.MS_NODEV
    proc = secure_join(root, "/proc", make_dir=True)
    mounts.mount("proc", proc, "proc", nosuid_nodev | mounts.MS_NOEXEC)
    sys_dir = secure_join(root, "/sys", make_dir=True)
    try:
        mounts.mount("sysfs", sys_dir, "sysfs", nosuid_nodev | mounts.MS_NOEXEC | mounts.MS_RDONLY)
    except OSError:  # a host-network container may not mount sysfs everywhere: bind it
        mounts.bind("/sys", sys_dir, readonly=True)
    dev = secure_join(root, "/dev", make_dir=True)
    mounts.mount("tmpfs", dev, "tmpfs", mounts.MS_NOSUID, "mode=755,size=65536k")
    for name, major, minor in (
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ):
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)
    (dev / "pts").mkdir()
    mounts.mount(
        "devpts",
        dev / "pts",
        "devpts",
        mounts.MS_NOSUID | mounts.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    os.symlink("pts/ptmx", dev / "ptmx")
    (dev / "shm").mkdir()
    mounts.mount("shm", dev / "shm", "tmpfs", nosuid_nodev | mounts.MS_NOEXEC, "size=65536k")
    (dev / "mqueue").mkdir()
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ):
        os.symlink(target, dev / link)


def _mount_one(root: Path, prepared: PreparedMount) -> None:
    is_file = prepared.fstype is None and not os.path.isdir(prepared.source)
    target = secure_join(root, prepared.target)
    if is_file and target.is_dir():
        raise StartError(
            EXIT_RUNTIME,
            f"cannot mount the file {prepared.source} on {prepared.target}: the image has a "
            "directory there; bind a directory, or pick another target",
        )
    if not is_file and target.exists() and not target.is_dir():
        raise StartError(
            EXIT_RUNTIME,
            f"cannot mount the directory {prepared.source} on {prepared.target}: the image has "
            "a file there; bind a file, or pick another target",
        )
    if is_file and not target.exists():
        secure_join(root, os.path.dirname(prepared.target), make_dir=True)
        target.touch()
    elif not is_file:
        target = secure_join(root, prepared.target, make_dir=True)
    if prepared.fill_from_image:
        _fill(target, Path(prepared.source))
    if prepared.fstype is None:
        mounts.bind(
            prepared.source,
            target,
            readonly=prepared.readonly,
            recursive=prepared.recursive,
            propagation=prepared.propagation,
        )
    else:
        flags = mounts.MS_NOSUID | mounts.MS_NODEV | prepared.flags
        if prepared.readonly:
            flags |= mounts.MS_RDONLY
        mounts.mount(prepared.source, target, prepared.fstype, flags, prepared.data or None)


def _fill(image_dir: Path, volume_dir: Path) -> None:
    """Docker's pre-fill: the image's files at the mount point go into an empty volume."""
    if not image_dir.is_dir() or not volume_dir.is_dir() or any(volume_dir.iterdir()):
        return
    if not any(image_dir.iterdir()):
        return
    import subprocess

    done = subprocess.run(
        ["cp", "-a", "--", f"{image_dir}/.", f"{volume_dir}/"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise OSError(errno.EIO, f"copying the image's {image_dir} into the volume failed")
    st = image_dir.stat()
    os.chown(volume_dir, st.st_uid, st.st_gid)
    os.chmod(volume_dir, stat.S_IMODE(st.st_mode))


def secure_join(root: Path, path: str, *, make_dir: bool = False) -> Path:
    """``root/path`` with every symlink resolved as if ``root`` were ``/``.

    An image's ``/data -> /etc`` symlink then points at the container's /etc,
    never the host's. Missing components are made as directories when
    ``make_dir`` is set.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        current = root.joinpath(*resolved, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not make_dir:
                resolved.append(part)
                continue
            os.mkdir(current, 0o755)
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path} in the image")
            target = os.readlink(current)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def resolve_user(user: str) -> tuple[int, int, list[int], str]:
    """``name``, ``uid``, ``name:group`` or ``uid:gid`` -> uid, gid, groups, home.

    Names come from the container's own /etc/passwd and /etc/group.
    """
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = _table("/etc/passwd")
    entry = next((e for e in passwd if name in (e[0], e[2]) and len(e) > 5), None)
    if entry is not None:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
    elif name.isdigit():
        uid, gid, home = int(name), 0, "/"
    else:
        raise StartError(
            EXIT_RUNTIME, f"unable to find user {name}: no matching entries in passwd file"
        )
    groups_table = _table("/etc/group")
    if group:
        found = next((g for g in groups_table if group in (g[0], g[2]) and len(g) > 2), None)
        if found is not None:
            gid = int(found[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise StartError(
                EXIT_RUNTIME, f"unable to find group {group}: no matching entries in group file"
            )
    extra = [
        int(g[2])
        for g in groups_table
        if len(g) > 3 and entry is not None and entry[0] in g[3].split(",")
    ]
    return uid, gid, sorted({gid, *extra}), home


def _table(path: str) -> list[list[str]]:
    try:
        with open(path) as file:
            return [line.rstrip("\n").split(":") for line in file if ":" in line]
    except OSError:
        return []


def _loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    # a socket from libc, not the socket module: its import costs every run a few ms
    af_inet, sock_dgram = 2, 2
    sock = libc.socket(af_inet, sock_dgram | os.O_CLOEXEC, 0)
    if sock < 0:
        raise_errno("socket for the loopback interface")
    try:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
    finally:
        os.close(sock)
