"""A process attached to our own terminal or stdio: raw mode, window sizes, stdin copies.

Used by the foreground supervisor (``cargohold run -i -t``) and by
``cargohold exec``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import termios
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from cargohold.core.containers import runner, signals
from cargohold.core.containers.records import Container

if TYPE_CHECKING:
    from cargohold.core.containers import execute


@contextlib.contextmanager
def terminal(master: int) -> Iterator[None]:
    """Our terminal raw while a ``-t`` process has it; its size follows ours (SIGWINCH)."""
    if not os.isatty(0):
        yield
        return

    def resize(_signum: int = 0, _frame: object = None) -> None:
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

    import tty

    saved = termios.tcgetattr(0)
    resize()
    previous = signal.signal(signal.SIGWINCH, resize)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def copy_stdin(write_fd: int, done: Callable[[], None]) -> threading.Thread:
    """In a thread: our stdin into ``write_fd`` until EOF, then ``done()``."""

    def run() -> None:
        try:
            while chunk := os.read(0, 65536):
                os.write(write_fd, chunk)
        except OSError:
            pass
        finally:
            done()

    thread = threading.Thread(target=run, name="stdin", daemon=True)
    thread.start()
    return thread


def run_exec(container: Container, spec: execute.ExecSpec, *, stdin: bool) -> int:
    """``cargohold exec``: run ``spec`` in ``container`` on our stdio; its exit code."""
    from cargohold.core.containers import execute

    with contextlib.ExitStack() as stack:
        if spec.tty:
            master, slave = os.openpty()
            os.set_inheritable(master, False)
            stack.enter_context(terminal(master))
            pid = _spawn(container, spec, slave, slave, slave)
            if stdin:
                copy_stdin(master, lambda: None)
            stack.enter_context(signals.forwarded(pid))
            with contextlib.suppress(OSError):
                while chunk := os.read(master, 65536):
                    os.write(1, chunk)
            os.close(master)
        else:
            pid = execute.spawn(container, spec, 0 if stdin else None, 1, 2)
            stack.enter_context(signals.forwarded(pid))
        _, status = os.waitpid(pid, 0)
    return runner.exit_code_of(status)


def _spawn(container: Container, spec: execute.ExecSpec, *stdio: int) -> int:
    from cargohold.core.containers import execute

    try:
        return execute.spawn(container, spec, stdio[0], stdio[1], stdio[2])
    finally:
        os.close(stdio[0])
