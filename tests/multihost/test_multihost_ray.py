"""The Ray runner on three hosts: a head on A, a node on B, the flow on D (Ray Client)."""

from __future__ import annotations

import re

import pytest
from conftest import RAY_ENV, RayHosts, _ray_start, _ray_started, run_on
from hosts import Network, python, run_and_pull_link, wait_until

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
# Ray returns a run's log lines with its outcome, so a run says where it started in a file of
# the shared folder, for the test to pull the cable while it runs.
LINK_FLOW = '''
import pathlib, socket, sys, time
from taskloom import flow, task

@task(retries=1, retry_delay_seconds=0)
def long_nap(i, shared):
    (pathlib.Path(shared) / f"nap-{i}-started-on-{socket.gethostname()}").touch()
    time.sleep(5)
    return socket.gethostname()

@task
def hosts(names):
    return sorted(set(names))

@flow
def naps():
    futures = long_nap.map(range(8), sys.argv[1])
    downstream = hosts.submit(futures)  # Ray holds it until its inputs are there
    for f in futures:
        f.wait()
    downstream.wait()
    for f in futures:
        print("FINAL", f.task_run.name, f.state.name, f.state.result(raise_on_failure=False))
    print("DOWNSTREAM", downstream.state.name)
    return "done"

if __name__ == "__main__":
    naps(return_state=True)
    print("FLOW ENDED")
'''


def test_a_node_whose_link_goes_down_ends_its_runs_never_hangs(ray_hosts: RayHosts, network: Network) -> None:
    """Ray marks the node dead after its health checks fail, but would fail the runs already
    on it only when the flow's connection to their workers times out (minutes): the runner
    ends them itself, and the task's retry runs them on the nodes that are left."""
    d = ray_hosts.flow
    e = network.add("re")  # a node of this test alone: its link goes down for good
    try:
        node = e.start(_ray_start(e, "--address", ray_hosts.address, cpus=2), "ray.log", env=RAY_ENV)
        wait_until(lambda: _ray_started(e), "ray node on host-re", 120, [node])
        (d.workdir / "link_flow.py").write_text(LINK_FLOW)
        output = run_and_pull_link(
            d, python("link_flow.py", str(network.shared)), d.env(ray_hosts.env()),
            lambda _: any(network.shared.glob("nap-*-started-on-host-re")), lost=e,
        )
        finals = dict(re.findall(r"FINAL (\S+) (\w+)", output))
        assert len(finals) == 8 and set(finals.values()) <= {"Completed", "Crashed"}, finals
        on_e = {int(f.name.split("-")[1]) for f in network.shared.glob("nap-*-started-on-host-re")}
        assert on_e, output[-3000:]
        lost = {
            run for run, where in re.findall(r"Task run '(\S+)' - Crashed \(NodeLostError: The Ray node at (\S+ \(\S+\))", output)
            if where == f"{e.address} (host-re)"
        }
        for run, final in finals.items():
            if int(run.rsplit("-", 1)[1]) in on_e:  # run names end in their map index
                assert run in lost, ("the run on the lost node ended by the runner", run, output[-4000:])
                ran_again = re.search(rf"FINAL {re.escape(run)} Completed host-r[ab]\b", output)
                assert ran_again or final == "Crashed", (run, output[-3000:])
        assert f"The Ray node at {e.address} (host-re) is dead" in output, output[-3000:]
        # A run that takes a lost run's result was waiting in Ray for it: it ends too, as
        # after a lost worker (its upstream run crashed once, so it does not run).
        assert "DOWNSTREAM NotReady" in output, output[-3000:]
    finally:
        e.remove()
