"""The Ray runner on three hosts: a head on A, a node on B, the flow on D (Ray Client)."""

from __future__ import annotations

import re

import pytest
from conftest import RayHosts, run_on
from hosts import Network, python

pytestmark = [pytest.mark.multihost, pytest.mark.ray, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_the_conformance_kit_passes_on_two_ray_nodes(ray_hosts: RayHosts, network: Network) -> None:
    d = ray_hosts.flow
    done = run_on(
        d,
        python(
            "-m", "pytest", "--pyargs", "taskloom.testing", "-q", "-rs", "-p", "no:cacheprovider",
            "--basetemp", str(d.root / "tmp" / "kit"),
            "--taskloom-runner", "ray", "--taskloom-shared-dir", str(network.shared),
            *[arg for option in ray_hosts.runner_options() for arg in ("--taskloom-runner-option", option)],
        ),
        timeout=900,
        **ray_hosts.env(),
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
    # Skipped only where the runner lacks a capability, never for want of the test's folder.
    assert "cannot see the test's folder" not in done.stdout, done.stdout[-2000:]


WHERE_FLOW = '''
import socket, time
from taskloom import flow, get_run_logger, task

@task
def where(i):
    get_run_logger().info("run %d on %s", i, socket.gethostname())
    time.sleep(0.5)
    return socket.gethostname()

@flow
def spread():
    return sorted({f.result() for f in where.map(range(6))})

if __name__ == "__main__":
    print("RAN ON", spread())
'''


def test_worker_logs_reach_the_flow_host_with_run_names(ray_hosts: RayHosts) -> None:
    d = ray_hosts.flow
    (d.workdir / "flow.py").write_text(WHERE_FLOW)
    done = run_on(d, python("flow.py"), **ray_hosts.env())
    assert done.returncode == 0, done.stderr[-4000:]
    console = done.stdout + done.stderr
    lines = re.findall(r"Task run '(where-\w+-\d)' - run (\d) on (host-\w+)", console)
    assert sorted(int(i) for _, i, _ in lines) == list(range(6)), console[-3000:]
    assert {host for _, _, host in lines} <= {"host-ra", "host-rb"}, "the runs ran on the head and node B"
    assert all(name.endswith(i) for name, i, _ in lines), "each line carries its own run's name"
