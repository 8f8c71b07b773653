"""Session fixtures of the Ray tests: one head started with ``ray start``, one connection to it.

Starting Ray takes seconds, so the suite starts two: a head of its own (``ray start --head``
in a process group of its own, on 127.0.0.1, stopped by that group at the end; never
``ray stop``, which would end every Ray on the machine), and, in a subprocess, the private
local Ray that ``RayTaskRunner()`` starts and stops itself.

Ray allows one connection per process. The test process connects to the head once, through
a `RayTaskRunner` entered for the whole session; the runners of the flows under test then find
the connection open, use it and leave it open.

Every Ray process here runs with ``RAY_AUTH_MODE=disabled`` (no token file is written to
``~/.ray``) and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray keeps 127.0.0.1 as the node
address instead of the machine's other address).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
RAY_BIN = Path(sys.executable).with_name("ray")

#: The environment of every Ray process the tests start, and of the test process itself.
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def alive(pids: list[tuple[int, float]]) -> list[int]:
    """Which of ``(pid, create_time)`` are still running (not zombies, not a reused pid)."""
    import psutil

    left = []
    for pid, created in pids:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    return left


def descendants(pid: int) -> list[tuple[int, float]]:
    """``(pid, create_time)`` of every process below ``pid``."""
    import psutil

    found = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return found  # it is gone already: nothing below it to find
    for child in children:
        try:
            found.append((child.pid, child.create_time()))
        except psutil.NoSuchProcess:
            pass
    return found


def flow_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess flow: this one's, without TASKLOOM_*, plus Ray's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env.pop("RAY_ADDRESS", None)
    return {**env, **RAY_ENV, **extra}


def run_python(
    script: Path, cwd: Path, timeout: float = 180, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=flow_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@attrs.frozen
class Head:
    """A Ray head started by the suite: where it answers and how to stop it."""

    address: str  # host:port of its GCS, what ``ray.init`` and the runner take
    client_address: str  # ray://host:port of its Ray Client server
    pgid: int
    temp_dir: Path


def _wait_for_head(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
        if answers("127.0.0.1", port) and "Ray runtime started" in log.read_text():
            return
        time.sleep(0.25)
    raise RuntimeError(f"The Ray head did not start within {timeout} s:\n{log.read_text()}")


def _stop_group(leader: int, processes: list[tuple[int, float]]) -> None:
    """Stop the head: TERM to ``ray start --block`` (it stops its own processes in a few
    seconds; TERM to the whole group would leave GCS and raylet waiting), then KILL the group."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            if sig == signal.SIGTERM:
                os.kill(leader, sig)
            else:
                os.killpg(leader, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while alive(processes) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive(processes):
            return


@contextmanager
def started_head(temp_dir: Path) -> Iterator[Head]:
    """A head of two CPUs and one ``custom`` resource, as its own process group on 127.0.0.1,
    with ``temp_dir`` its own; stopped by that group on leaving (what outlived it is killed)."""
    log = temp_dir / "head.log"
    port, client_port = free_port(), free_port()
    command = [
        str(RAY_BIN), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1",
        "--port", str(port),
        "--ray-client-server-port", str(client_port),
        "--num-cpus", "2",
        "--resources", '{"custom": 1}',
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    seen: set[tuple[int, float]] = set()
    try:
        _wait_for_head(proc, port, log, timeout=120)
        seen.update(descendants(proc.pid))
        yield Head(f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}", proc.pid, temp_dir)
    finally:
        seen.update(descendants(proc.pid))  # workers too: they are the raylet's children
        _stop_group(proc.pid, sorted(seen))
        proc.wait(timeout=10)
        left = alive(sorted(seen))
        for pid in left:  # started by this fixture (descendants of its ray start): clean up
            os.kill(pid, signal.SIGKILL)
        assert not left, f"Ray processes of the test head outlived its process group: {left}"


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """The suite's head (see `started_head`), for every test that does not stop it."""
    with started_head(Path(tmp_path_factory.mktemp("rayhead"))) as head:
        yield head


@pytest.fixture(scope="session")
def ray_connected(ray_head: Head) -> Iterator[Head]:
    """This process connected to the head for the whole session, through the runner itself."""
    from taskloom_ray import RayTaskRunner

    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        mp.delenv("RAY_ADDRESS", raising=False)
        # Tasks defined at module level in these test files travel by reference: the
        # workers import them from this folder, as a user's workers import their package.
        job_env = {"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}}
        runner = RayTaskRunner(ray_head.address, init_kwargs={"runtime_env": job_env})
        runner.__enter__()
        try:
            yield ray_head
        finally:
            runner.__exit__(None, None, None)


@pytest.fixture
def head_runner(ray_connected: Head) -> Any:
    """A fresh runner for the session head (it uses the open connection)."""
    from taskloom_ray import RayTaskRunner

    return RayTaskRunner(ray_connected.address)
