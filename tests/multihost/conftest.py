"""Clusters spread over namespaced hosts (see `hosts`), each started once per test session.

``dask_hosts``: a ``dask scheduler`` on host A, a ``dask worker`` on each of hosts B and C, and
host D for the flow. ``ray_hosts``: a Ray head on host A, a Ray node on host B, host D for the
flow. Flows run on D as subprocesses (``python flow.py``, ``taskloom run``, ``pytest``), so
nothing of the test process reaches the workers but what taskloom ships.

Where namespaces cannot be made (not root, no ``ip``), every test here is skipped with the
reason; with ``CI`` set it fails instead, since CI is root and must run them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hosts import Host, Network, clean_leftovers, python, unavailable, wait_until

STARTUP_SECONDS = 120
DASK_PORT = 8786
#: The scheduler drops a worker it has not heard from for this long (Dask's default is five
#: minutes): a host whose link goes down is noticed in seconds, not minutes.
DASK_WORKER_TTL = "10s"
RAY_PORT = 6379
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
#: The head declares a node dead after three missed health checks a second apart, each given
#: a second (Ray's defaults take about half a minute): a node whose link goes down is noticed
#: in seconds.
RAY_HEAD_ENV = {
    **RAY_ENV,
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the multi-host tests, but {reason}.")
        pytest.skip(reason)
    clean_leftovers()
    net = Network()
    try:
        yield net
    finally:
        net.close()


@attrs.define
class DaskHosts:
    address: str
    scheduler: Host
    workers: list[Host]
    flow: Host

    def add_worker(self, host: Host) -> None:
        """Start a ``dask worker`` on ``host`` and wait until the scheduler has it."""
        before = _registered(self.scheduler)
        process = host.start(_dask_worker(self.address, host), "worker.log")
        wait_until(lambda: _registered(self.scheduler) > before, f"dask worker on {host}", STARTUP_SECONDS, [process])


def _registered(scheduler: Host) -> int:
    log = scheduler.root / "scheduler.log"
    return len(re.findall(r"Register worker addr", log.read_text())) if log.exists() else 0


def _dask_worker(address: str, host: Host) -> list[str]:
    return python(
        "-m", "dask", "worker", address, "--host", host.address, "--nthreads", "1",
        "--no-dashboard", "--local-directory", str(host.workdir), "--name", host.hostname,
    )  # fmt: skip


# Module-scoped: each cluster serves one test file and is gone before the single-host Dask
# and Ray tests start theirs (two Ray clusters at once starve a 2-core machine).
@pytest.fixture(scope="module")
def dask_hosts(network: Network) -> Iterator[DaskHosts]:
    pytest.importorskip("distributed")
    a, b, c, d = (network.add(name) for name in "abcd")
    address = f"tcp://{a.address}:{DASK_PORT}"
    scheduler = a.start(
        python("-m", "dask", "scheduler", "--host", a.address, "--port", str(DASK_PORT), "--no-dashboard"),
        "scheduler.log",
        env={"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": DASK_WORKER_TTL},
    )
    wait_until(
        lambda: "Scheduler at:" in (a.root / "scheduler.log").read_text(), "dask scheduler", STARTUP_SECONDS, [scheduler]
    )
    cluster = DaskHosts(address, a, [b, c], d)
    try:
        for host in (b, c):
            cluster.add_worker(host)
        yield cluster
    finally:
        for host in (b, c, a):
            host.stop()


@attrs.define
class RayHosts:
    address: str  # the head's GCS, A:6379
    head: Host
    nodes: list[Host]
    flow: Host

    def runner_options(self) -> list[str]:
        """``--runner-option`` arguments of a flow on host D: the head, and D's node address."""
        return ["address=" + self.address, "init_kwargs=" + json.dumps({"_node_ip_address": self.flow.address})]

    def env(self) -> dict[str, str]:
        """The same, as the environment of a flow on host D."""
        return {
            **RAY_ENV,
            "TASKLOOM_TASK_RUNNER": "ray",
            "TASKLOOM_RUNNERS_RAY_ADDRESS": self.address,
            "TASKLOOM_RUNNERS_RAY_INIT_KWARGS": json.dumps({"_node_ip_address": self.flow.address}),
        }


def _ray_start(host: Host, *args: str, cpus: int = 1) -> list[str]:
    ray = str(Path(python()[0]).with_name("ray"))
    return [
        ray, "start", "--block", "--node-ip-address", host.address, "--num-cpus", str(cpus),
        "--temp-dir", str(host.root / "ray"), "--disable-usage-stats", *args,
    ]  # fmt: skip


def _ray_started(host: Host) -> bool:
    """Whether ``ray start`` on ``host`` is up (a node says so once the head's GCS has it)."""
    return "Ray runtime started" in (host.root / "ray.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def ray_hosts(network: Network) -> Iterator[RayHosts]:
    pytest.importorskip("ray")
    a, b, d = (network.add(name) for name in ("ra", "rb", "rd"))
    head = a.start(
        _ray_start(
            a, "--head", "--port", str(RAY_PORT),
            "--include-dashboard=false",
        ),
        "ray.log",
        env=RAY_HEAD_ENV,
    )
    try:
        wait_until(lambda: _ray_started(a), "ray head", STARTUP_SECONDS, [head])
        gcs = f"{a.address}:{RAY_PORT}"
        node = b.start(_ray_start(b, "--address", gcs), "ray.log", env=RAY_ENV)
        # A Ray driver runs on a node of its cluster: D joins with no CPUs, so it runs none of
        # the tasks. (Ray Client, ray://A:10001, is the other way in; its per-job server did
        # not start in these namespaces with ray 2.60.)
        driver_node = d.start(_ray_start(d, "--address", gcs, cpus=0), "ray.log", env=RAY_ENV)
        wait_until(lambda: _ray_started(b) and _ray_started(d), "ray nodes", STARTUP_SECONDS, [head, node, driver_node])
        yield RayHosts(gcs, a, [b], d)
    finally:
        # Never `ray stop` (it ends every Ray of the machine): each node by its process group.
        for host in (d, b, a):
            host.stop(grace=15.0)


def run_on(host: Host, args: list[str], timeout: float = 300, **env: str) -> Any:
    """Run ``args`` on ``host`` and return the completed process (output as text)."""
    return host.run(args, timeout=timeout, env=env)
