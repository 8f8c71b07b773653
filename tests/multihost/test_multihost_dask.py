"""The Dask runner on four hosts: a scheduler on A, workers on B and C, the flow on D."""

from __future__ import annotations

import re

import pytest
from conftest import DaskHosts, run_on
from hosts import Network, python, run_and_pull_link

pytestmark = [pytest.mark.multihost, pytest.mark.dask, pytest.mark.slow]

WHERE_FLOW = '''
import socket, sys, time
from taskloom import flow, get_run_logger, task

@task(persist_result=True)
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


def test_the_conformance_kit_passes_on_three_hosts(dask_hosts: DaskHosts, network: Network) -> None:
    d = dask_hosts.flow
    done = run_on(
        d,
        python(
            "-m", "pytest", "--pyargs", "taskloom.testing", "-q", "-rs", "-p", "no:cacheprovider",
            "--basetemp", str(d.root / "tmp" / "kit"),
            "--taskloom-runner", "dask", "--taskloom-runner-option", f"address={dask_hosts.address}",
            "--taskloom-shared-dir", str(network.shared),
        ),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
    # Skipped only where the runner lacks a capability, never for want of the test's folder.
    assert "cannot see the test's folder" not in done.stdout, done.stdout[-2000:]


def test_worker_logs_reach_the_flow_host_with_run_names(dask_hosts: DaskHosts) -> None:
    d = dask_hosts.flow
    (d.workdir / "flow.py").write_text(WHERE_FLOW)
    done = run_on(
        d,
        python("-m", "taskloom", "run", "flow.py:spread", "--runner", "dask", "--runner-option", f"address={dask_hosts.address}"),
        TASKLOOM_RESULTS_PATH="results",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    console = done.stdout + done.stderr
    lines = re.findall(r"Task run '(where-\w+-\d)' - run (\d) on (host-\w)", console)
    assert sorted(int(i) for _, i, _ in lines) == list(range(6)), console[-3000:]
    assert {host for _, _, host in lines} <= {"host-b", "host-c"}, "the runs ran on the worker hosts"
    assert all(name.endswith(i) for name, i, _ in lines), "each line carries its own run's name"
    # A relative results.path with workers on other hosts: one warning that names the fix.
    warnings = [line for line in console.splitlines() if "may run it on other hosts" in line]
    assert len(warnings) == 1, console[-3000:]
    assert "a storage that every host reaches" in warnings[0] and "shared filesystem" in warnings[0]
    assert str(d.workdir / "results") in warnings[0], "the path is resolved on the flow's host"
    # Which host ran what is in the history of host D.
    [flow_run] = re.findall(r"Created flow run '([\w-]+)'", console)
    shown = run_on(d, python("-m", "taskloom", "runs", "show", flow_run), timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "host-b/" in shown.stdout or "host-c/" in shown.stdout, shown.stdout


def test_results_on_a_shared_path_are_written_by_workers_and_read_on_the_flow_host(
    dask_hosts: DaskHosts, network: Network
) -> None:
    d = dask_hosts.flow
    (d.workdir / "flow.py").write_text(WHERE_FLOW)
    results = network.shared / "results"
    done = run_on(
        d,
        python("-m", "taskloom", "run", "flow.py:spread", "--runner", "dask", "--runner-option", f"address={dask_hosts.address}"),
        TASKLOOM_RESULTS_PATH=str(results),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "may run it on other hosts" not in done.stdout + done.stderr, "an absolute path is the user's choice"
    records = list((results / "results").iterdir())
    assert len(records) == 6
    assert {r.read_bytes().rpartition(b"host-")[2][:1] for r in records} <= {b"b", b"c"}


LINK_FLOW = '''
import socket, sys, time
from taskloom import flow, get_run_logger, task

@task
def long_nap(i):
    get_run_logger().info("nap %d started on %s", i, socket.gethostname())
    time.sleep(4)
    return socket.gethostname()

@flow
def naps():
    futures = long_nap.map(range(6))
    for f in futures:
        f.wait()
    for f in futures:
        print("FINAL", f.task_run.name, f.state.name, f.state.result(raise_on_failure=False))
    return "done"

if __name__ == "__main__":
    naps(return_state=True)
    print("FLOW ENDED")
'''


def test_a_worker_host_whose_link_goes_down_ends_its_runs_never_hangs(
    dask_hosts: DaskHosts, network: Network
) -> None:
    d = dask_hosts.flow
    e = network.add("e")  # a worker host of this test alone: its link goes down for good
    try:
        dask_hosts.add_worker(e)
        (d.workdir / "link_flow.py").write_text(LINK_FLOW)
        env = d.env({"TASKLOOM_TASK_RUNNER": "dask", "TASKLOOM_RUNNERS_DASK_ADDRESS": dask_hosts.address})
        output = run_and_pull_link(
            d, python("link_flow.py"), env, lambda out: "started on host-e" in out, lost=e
        )
        finals = dict(re.findall(r"FINAL (\S+) (\w+)", output))
        assert len(finals) == 6 and set(finals.values()) <= {"Completed", "Crashed"}, finals
        on_e = set(re.findall(r"Task run '(\S+)' - nap \d started on host-e", output))
        assert on_e, output[-3000:]
        for name in on_e:
            ran_again = re.search(rf"FINAL {re.escape(name)} Completed host-[bc]\b", output)
            assert ran_again or finals[name] == "Crashed", (name, output[-3000:])
    finally:
        e.remove()
