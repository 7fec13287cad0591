"""The data path through a mountpoint: sequential, 4k random and small-file I/O.

Every job runs three times per repeat, interleaved: on a plain directory of the
filesystem holding the work directory (the floor), on a private tmpfs (the
memory ceiling, in ``extra``), and on the target's mountpoint. The jobs run
with fio (``--output-format=json``) when it is installed and with the Python
runner below otherwise; each figure says which in ``extra["runner"]``, and a run
never mixes the two for one figure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cargohold.core.testing.bench import floors
from cargohold.core.testing.bench.lifecycle import mount_id
from cargohold.core.testing.bench.model import Case, Figure, VolumeTarget, failed

NAME = "data"
SMALL_FILES = 500
RANDOM_MB = 16  # 4k random I/O runs on a smaller file: fsync per write is slow
JOB_CAP = 30.0  # seconds one job may take when the run has no time limit


@dataclass(frozen=True)
class Job:
    """One data-path job: what fio is told, and what the figure is in."""

    name: str
    unit: str  # "MB/s" or "IOPS"
    fio: tuple[str, ...]


def jobs(size_mb: int, files: int = SMALL_FILES) -> list[Job]:
    rand = min(size_mb, RANDOM_MB)
    small: tuple[str, ...] = ("--nrfiles", str(files), "--filesize=4k", "--bs=4k", "--openfiles=1")
    small += ("--filename_format=small.$filenum",)
    return [
        Job("seq write+fsync", "MB/s", ("--rw=write", "--bs=1M", f"--size={size_mb}M",
                                         "--end_fsync=1", "--filename=seq.dat")),
        Job("seq read", "MB/s", ("--rw=read", "--bs=1M", f"--size={size_mb}M",
                                  "--filename=seq.dat")),
        Job("4k randwrite+fsync", "IOPS", ("--rw=randwrite", "--bs=4k", f"--size={rand}M",
                                           "--fsync=1", "--filename=rand.dat")),
        Job("4k randread", "IOPS", ("--rw=randread", "--bs=4k", f"--size={rand}M",
                                     "--filename=rand.dat")),
        Job("small create", "IOPS", ("--ioengine=filecreate", *small)),
        Job("small stat", "IOPS", ("--ioengine=filestat", *small)),
        Job("small delete", "IOPS", ("--ioengine=filedelete", *small)),
    ]  # fmt: skip


def runner_name() -> str:
    return "fio" if shutil.which("fio") else "python"


def _present(job: Job, directory: Path) -> tuple[str, ...]:
    """The job's options; stat and delete take only the files create made.

    fio would otherwise lay out the missing ones first (untimed, but slow).
    """
    if not job.name.startswith(("small stat", "small delete")):
        return job.fio
    count = len(list(directory.glob("small.*")))
    if count == 0:
        raise RuntimeError(f"{job.name}: small create left no files in {directory}")
    return _with_files(job.fio, count)


def _with_files(options: tuple[str, ...], count: int) -> tuple[str, ...]:
    out = list(options)
    at = out.index("--nrfiles")
    out[at + 1] = str(count)
    return tuple(out)


def run_fio(job: Job, places: dict[str, Path], seconds: float) -> dict[str, float]:
    """The job's MB/s or IOPS in each place, from one fio process's JSON.

    The places are jobs of one run, each waiting for the one before
    (``--stonewall``): fio costs about half a second to start and stop, paid
    once for all of them.
    """
    limit_ms = max(100, int(seconds * 1000))  # fio takes time values in ms
    command = ["fio", "--output-format=json"]
    for role, directory in places.items():
        command += [f"--name={role}", f"--directory={directory}", f"--runtime={limit_ms}ms"]
        command += [*_present(job, directory), "--stonewall"]
    budget = seconds * len(places) + 60
    done = subprocess.run(command, capture_output=True, text=True, timeout=budget)
    try:
        report = json.loads(done.stdout[done.stdout.index("{") :])
    except ValueError:
        raise RuntimeError(f"fio {job.name}: {done.stderr.strip()[-300:]}") from None
    values: dict[str, float] = {}
    for result in report["jobs"]:
        role = result["jobname"]
        if result.get("error"):
            reason = os.strerror(int(result["error"]))
            raise RuntimeError(f"fio {job.name} on the {role}: {reason} ({places[role]})")
        side = max(("read", "write"), key=lambda s: int(result[s]["total_ios"]))
        if job.unit == "MB/s":
            values[role] = float(result[side]["bw_bytes"]) / 1e6
        else:
            values[role] = float(result[side]["iops"])
    return values


# -- the Python runner: the same jobs, when fio is not on the host -------------


def _seq_write(directory: Path, size_mb: int, deadline: float) -> float:
    block = os.urandom(1 << 20)
    began = time.perf_counter()
    fd = os.open(directory / "seq.dat", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        while written < size_mb and time.monotonic() < deadline:
            os.write(fd, block)
            written += 1
        os.fsync(fd)
    finally:
        os.close(fd)
    return written * (1 << 20) / (time.perf_counter() - began) / 1e6


def _seq_read(directory: Path, size_mb: int, deadline: float) -> float:
    fd = os.open(directory / "seq.dat", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # as fio's invalidate=1
        began = time.perf_counter()
        total = 0
        while time.monotonic() < deadline and (chunk := os.read(fd, 1 << 20)):
            total += len(chunk)
    finally:
        os.close(fd)
    return total / (time.perf_counter() - began) / 1e6


def _random(directory: Path, size_mb: int, deadline: float, write: bool) -> float:
    import random

    path = directory / "rand.dat"
    blocks = min(size_mb, RANDOM_MB) * 256
    if not path.exists() or path.stat().st_size < blocks * 4096:
        with open(path, "wb") as out:
            out.truncate(blocks * 4096)
    fd = os.open(path, os.O_RDWR)
    order = random.Random(7).sample(range(blocks), blocks)
    page = os.urandom(4096)
    began = time.perf_counter()
    done = 0
    try:
        if not write:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        for block in order:
            if time.monotonic() >= deadline:
                break
            if write:
                os.pwrite(fd, page, block * 4096)
                os.fsync(fd)
            else:
                os.pread(fd, 4096, block * 4096)
            done += 1
    finally:
        os.close(fd)
    return done / (time.perf_counter() - began)


def _small(directory: Path, files: int, deadline: float, step: str) -> float:
    page = os.urandom(4096)
    if step == "create":
        paths = [directory / f"small.{n}" for n in range(files)]
    else:  # as fio: only the files create made
        paths = sorted(directory.glob("small.*"))
        if not paths:
            raise RuntimeError(f"small {step}: small create left no files in {directory}")
    began = time.perf_counter()
    done = 0
    for path in paths:
        if time.monotonic() >= deadline:
            break
        if step == "create":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, page)
            os.close(fd)
        elif step == "stat":
            os.stat(path)
        else:
            os.unlink(path)
        done += 1
    return done / (time.perf_counter() - began)


def run_python(job: Job, directory: Path, seconds: float, size_mb: int) -> float:
    deadline = time.monotonic() + max(1.0, seconds)
    kind = job.name.split()[0:2]
    if job.name.startswith("seq write"):
        return _seq_write(directory, size_mb, deadline)
    if job.name.startswith("seq read"):
        return _seq_read(directory, size_mb, deadline)
    if kind[0] == "4k":
        return _random(directory, size_mb, deadline, write="write" in job.name)
    return _small(directory, SMALL_FILES, deadline, kind[1])


# -- the workload --------------------------------------------------------------


Measure = Callable[[Job, dict[str, Path], float], dict[str, float]]


def measurer(size_mb: int, runner: str | None = None) -> tuple[str, Measure]:
    chosen = runner or runner_name()
    if chosen == "fio":
        return chosen, run_fio

    def python(job: Job, places: dict[str, Path], seconds: float) -> dict[str, float]:
        return {role: run_python(job, d, seconds, size_mb) for role, d in places.items()}

    return chosen, python


def run_on(
    mountpoint: Path, case: Case, runner: str | None = None, repeats: int = 3
) -> list[Figure]:
    """Every job on ``mountpoint``, against the disk floor and the tmpfs ceiling."""
    chosen, measure = measurer(case.size_mb, runner)
    disk = case.workdir / "data-floor"
    work = mountpoint / f"chbench-{os.getpid()}"
    todo = jobs(case.size_mb)
    samples: dict[str, dict[str, list[float]]] = {j.name: {} for j in todo}
    errors: dict[str, str] = {}
    filesystem = floors.filesystem_of(case.workdir)
    with floors.tmpfs(case.workdir / "data-tmpfs", case.size_mb * 2 + 64) as memory:
        places = {"floor": disk, "tmpfs": memory, "target": work}
        for where in places.values():
            where.mkdir(parents=True, exist_ok=True)
        try:
            began = time.monotonic()
            for repeat in range(repeats):
                if repeat and case.left() < (time.monotonic() - began) / repeat:
                    break  # another repeat would not fit in what is left
                left = min(case.left(), JOB_CAP * len(todo) * len(places) * repeats)
                per_place = left / (len(todo) * len(places) * (repeats - repeat))
                for n, job in enumerate(todo):
                    if job.name in errors:
                        continue
                    if repeat == 0 and n and case.expired():
                        errors[job.name] = "not run: the time limit was reached"
                        continue
                    # each job starts in another place: the first of a run pays for
                    # what the previous one left (dirty pages, a warm cache)
                    turn = (repeat + n) % len(places)
                    order = dict(list(places.items())[turn:] + list(places.items())[:turn])
                    try:
                        values = measure(job, order, per_place)
                    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                        errors[job.name] = str(err)
                        continue
                    for role, value in values.items():
                        samples[job.name].setdefault(role, []).append(value)
                    case.advance((repeat + (n + 1) / len(todo)) / repeats)
        finally:
            for where in places.values():
                shutil.rmtree(where, ignore_errors=True)
    figures = []
    for job in todo:
        if job.name in errors:
            figures.append(failed(NAME, job.name, errors[job.name], job.unit))
            continue
        got = samples[job.name]
        figure = _figure(job, got["target"], got["floor"], got["tmpfs"], chosen)
        figure.floor_name = f"plain dir on {filesystem}"
        figures.append(figure)
    return figures


def _figure(
    job: Job, ours: list[float], floor: list[float], memory: list[float], runner: str
) -> Figure:
    import statistics

    ceiling = statistics.median(memory)
    value = statistics.median(ours)
    return Figure(
        workload=NAME,
        name=job.name,
        unit=job.unit,
        better="higher",
        value=value,
        floor=statistics.median(floor),
        floor_name="plain dir",
        samples=ours,
        floor_samples=floor,
        extra={
            "runner": runner,
            "tmpfs": round(ceiling, 3),
            "ratio_tmpfs": round(ceiling / value, 3) if value > 0 else None,
        },
    )


def run(target: VolumeTarget, case: Case, runner: str | None = None) -> list[Figure]:
    """Create and mount a volume on ``target``, run every job in it, then remove it."""
    import secrets

    volume = f"chbdata{secrets.token_hex(3)}"
    ident = mount_id()
    target.create(volume)
    try:
        path = target.mount(volume, ident)
        try:
            return run_on(path, case, runner)
        finally:
            target.unmount(volume, ident)
    finally:
        target.remove(volume)
