"""Dask clusters for the Dask runner's tests, each started once per test session.

``local_cluster``: a `distributed.LocalCluster` in this process (two single-threaded worker
processes). ``process_cluster``: a scheduler and two workers started as separate processes
with the ``dask`` command line, in a directory of their own, so they cannot import anything
from the tests' folders; killed, with their process group, at the end of the session.
Everything binds to 127.0.0.1, dashboards to free ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

HERE = Path(__file__).parent
STARTUP_SECONDS = 60


@dataclass
class ProcessCluster:
    """A scheduler and workers running as separate processes."""

    address: str
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_addresses(self) -> list[str]:
        with distributed.Client(self.address, timeout="20s", set_as_default=False) as client:
            return sorted(client.scheduler_info(n_workers=-1)["workers"])


def _dask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dask", *args]


def _wait_for(predicate: Any, what: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        dead = [p for p in processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: a dask process exited with code {dead[0].returncode}.")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {STARTUP_SECONDS} s.")


def _kill(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=15)


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[Any]:
    """A real LocalCluster: two worker processes with one thread each, on loopback."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    try:
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def _started_process_cluster(
    workers: int = 2, scheduler_args: tuple[str, ...] = ("--dashboard-address", "127.0.0.1:0"), nthreads: int = 1
) -> Iterator[ProcessCluster]:
    """``dask scheduler`` and ``workers`` ``dask worker`` processes, each in its own process group."""
    workdir = Path(tempfile.mkdtemp(prefix="taskloom-dask-cluster-"))
    scheduler_file = workdir / "scheduler.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    processes: list[subprocess.Popen[bytes]] = []
    log = (workdir / "cluster.log").open("wb")

    def start(args: list[str]) -> None:
        processes.append(
            subprocess.Popen(
                args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            _dask_command(
                "scheduler", "--host", "127.0.0.1", "--port", "0", *scheduler_args,
                "--scheduler-file", str(scheduler_file),
            )
        )
        _wait_for(scheduler_file.exists, "dask scheduler", processes)
        time.sleep(0.2)  # the file is written whole, but give the writer a moment
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(workers):
            start(
                _dask_command(
                    "worker", address, "--nthreads", str(nthreads), "--nworkers", "1",
                    "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                    "--local-directory", str(workdir),
                )
            )
        cluster = ProcessCluster(address, workdir, processes)

        def all_workers() -> bool:
            try:
                return len(cluster.worker_addresses()) == workers
            except OSError:
                return False

        _wait_for(all_workers, "dask workers", processes)
        yield cluster
    finally:
        _kill(processes)
        log.close()


@pytest.fixture(scope="session")
def process_cluster() -> Iterator[ProcessCluster]:
    """``dask scheduler`` and two ``dask worker`` processes, each in its own process group."""
    with _started_process_cluster() as cluster:
        yield cluster


@pytest.fixture
def new_process_cluster() -> Iterator[Callable[..., ProcessCluster]]:
    """Start a process cluster of the test's own (e.g. one it breaks); stopped after the test.

    Call it with the arguments of `_started_process_cluster`.
    """
    with contextlib.ExitStack() as stack:
        yield lambda *args, **kwargs: stack.enter_context(_started_process_cluster(*args, **kwargs))
