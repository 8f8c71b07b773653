"""Fixtures of the fsspec storage tests: a real S3 (a moto server) started once per session.

The moto server runs as a separate process (``python -m moto.server``) in a process group of
its own, bound to 127.0.0.1 on a port the OS picks; the port is read from the server's own
start-up line, so two sessions on one machine cannot race for it. The group is killed at the
end of the session. Only tests that ask for ``s3`` start it (they are marked slow).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

STARTUP_SECONDS = 60
BUCKET = "taskloom-tests"


@dataclass(frozen=True)
class S3:
    """A bucket on the moto server, and the storage_options that reach it."""

    endpoint: str
    bucket: str
    storage_options: dict[str, Any]

    def url(self, prefix: str | None = None) -> str:
        return f"s3://{self.bucket}/{prefix or uuid.uuid4().hex}"


def s3_options(endpoint: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


def _start_moto(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if found:
            endpoint = found.group(1)
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                return process, endpoint
            except OSError:
                pass
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with code {process.returncode}: {log_path.read_text()}")
        time.sleep(0.1)
    _stop(process)
    raise RuntimeError(f"moto server not ready within {STARTUP_SECONDS} s: {log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """A moto S3 server in its own process with one bucket, for the whole session."""
    import boto3

    workdir = Path(tempfile.mkdtemp(prefix="taskloom-moto-"))
    process, endpoint = _start_moto(workdir / "moto.log")
    try:
        options = s3_options(endpoint)
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        ).create_bucket(Bucket=BUCKET)
        yield S3(endpoint, BUCKET, options)
    finally:
        _stop(process)
