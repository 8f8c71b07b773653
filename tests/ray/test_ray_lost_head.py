"""A Ray head that dies mid-flow: unfinished runs crash naming its address, never "interrupted".

Each test starts a head of its own (``ray start --head`` in its own process group and
``--temp-dir``), since one of them kills it; the session's head is left alone. The flows run as
subprocesses: this process may already hold its one Ray connection to the session's head.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Head, alive, descendants, flow_env, started_head

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NAPS_FLOW = """
import sys, time
from taskloom import flow, task

@task(retries=1, retry_delay_seconds=0)
def nap(i):
    time.sleep(0.3)
    return i

@flow
def naps():
    futures = nap.map(range(60))
    for f in futures:
        f.wait()
    for f in futures:
        print("FINAL", f.task_run.name, f.state.name, "|", f.state.message, flush=True)
"""

NAPS_MAIN = """
if __name__ == "__main__":
    state = naps(return_state=True)
    print("FLOW ENDED", state.name, "|", state.message, flush=True)
"""

#: An injected fault: ray.shutdown blocks (as it once did on a dead head, on a loaded machine)
#: until the flow has returned; then it goes on, so that the process ends as usual.
STUCK_SHUTDOWN = """
import threading
import ray

release, shut, calls = threading.Event(), threading.Event(), []
real_shutdown = ray.shutdown

def stuck_shutdown(*args, **kwargs):
    calls.append(threading.current_thread().name)
    release.wait()
    try:
        real_shutdown(*args, **kwargs)
    finally:
        shut.set()

ray.shutdown = stuck_shutdown
"""

#: An injected fault: reads of Ray's node table after the first never return, as one does
#: for a minute when the head dies while it waits for the answer.
STUCK_NODE_TABLE = """
import threading
import ray

real_nodes, reads = ray.nodes, []

def cut_off_nodes(*args, **kwargs):
    reads.append(1)
    if len(reads) > 1:
        print("A READ OF THE NODE TABLE HANGS", flush=True)
        threading.Event().wait()
    return real_nodes(*args, **kwargs)

ray.nodes = cut_off_nodes
"""

RELEASE_SHUTDOWN = """
    print("SHUTDOWN CALLS WHILE STUCK", calls, flush=True)
    release.set()
    shut.wait()
"""


@pytest.fixture
def own_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    with started_head(Path(tmp_path_factory.mktemp("ownhead"))) as head:
        yield head


def _kill_group(head: Head) -> list[tuple[int, float]]:
    """SIGKILL the head's whole process group, as an out-of-memory kill would: no goodbye.
    Returns the processes it had (its workers may linger a moment after their raylet)."""
    processes = descendants(head.pgid)
    os.killpg(head.pgid, signal.SIGKILL)
    return processes


def _run_and_lose_the_head(
    head: Head, tmp_path: Path, script: str, when: str = "Finished in state Completed()", times: int = 4
) -> tuple[int, str]:
    """Run ``script`` as a flow on ``head``, kill the head once ``when`` is in its output
    ``times`` times (four runs completed), and return the flow's exit code and output."""
    (tmp_path / "flow.py").write_text(script)
    log = tmp_path / "flow.log"
    env = flow_env(TASKLOOM_TASK_RUNNER="ray", TASKLOOM_RUNNERS_RAY_ADDRESS=head.address)
    with log.open("wb") as out:
        flow = subprocess.Popen(
            [sys.executable, "flow.py"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    workers: list[tuple[int, float]] = []
    try:
        # Once the flow is under way (by default: a few runs completed), the head dies.
        deadline = time.monotonic() + 120
        while log.read_text().count(when) < times:
            assert flow.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        workers = _kill_group(head)
        flow.wait(timeout=180)  # a hang fails here; so would Ray ending the process (after 60 s)
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
        for pid in alive(workers):  # the lost head's workers, if any outlived their raylet
            os.kill(pid, signal.SIGKILL)
    return flow.returncode, log.read_text()


def _check_unfinished_runs_crashed(head: Head, returncode: int, output: str) -> None:
    assert returncode == 0, output[-4000:]
    finals = re.findall(r"FINAL (\S+) (\w+) \| (.*)", output)
    assert len(finals) == 60, output[-4000:]
    names = [state for _, state, _ in finals]
    completed, crashed = names.count("Completed"), names.count("Crashed")
    assert completed >= 4 and crashed, names
    assert completed + crashed == 60, "losing the head is not a cancellation: " + str(names)
    lost = (
        "Task run crashed: HeadLostError: Lost the connection to the Ray head at "
        f"{head.address} before this run finished; the run's Ray task and any results kept "
        "on the cluster were lost with it."
    )
    assert {message for _, state, message in finals if state == "Crashed"} == {lost}, output[-4000:]
    assert f"FLOW ENDED Failed | {crashed}/60 states failed." in output, output[-3000:]
    # Each unfinished run spends its retry (it crashed) before it crashes for good.
    retried = re.findall(r"Task run '(\S+)' - Crashed \(HeadLostError: .*\); retry 1 of 1", output)
    assert sorted(retried) == sorted(name for name, state, _ in finals if state == "Crashed"), output[-4000:]
    assert output.count(f"Lost the Ray head at {head.address}") == 1, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


def test_a_lost_head_crashes_unfinished_runs_naming_its_address(own_head: Head, tmp_path: Path) -> None:
    returncode, output = _run_and_lose_the_head(own_head, tmp_path, NAPS_FLOW + NAPS_MAIN)
    _check_unfinished_runs_crashed(own_head, returncode, output)


def test_a_lost_head_whose_disconnect_is_stuck_still_crashes_its_runs(own_head: Head, tmp_path: Path) -> None:
    script = STUCK_SHUTDOWN + NAPS_FLOW + NAPS_MAIN + RELEASE_SHUTDOWN
    returncode, output = _run_and_lose_the_head(own_head, tmp_path, script)
    _check_unfinished_runs_crashed(own_head, returncode, output)
    # The runs ended and the flow returned (its runner exited: a hang fails at flow.wait) while
    # the watch's ray.shutdown was still blocked, and nothing else called ray.shutdown meanwhile.
    assert "SHUTDOWN CALLS WHILE STUCK ['taskloom-ray-disconnect']" in output, output[-4000:]
    assert output.index("FLOW ENDED") < output.index("SHUTDOWN CALLS WHILE STUCK"), output[-4000:]
    assert f"Closing the connection to the lost Ray head at {own_head.address} has not finished" in output, output[-4000:]


def test_a_lost_head_is_noticed_while_a_read_of_the_node_table_hangs(own_head: Head, tmp_path: Path) -> None:
    # The head dies while the watch waits for Ray's node table: its probes of the head go on
    # (on a thread of their own), so the runs still crash in seconds, not when Ray ends the
    # process a minute later.
    script = STUCK_NODE_TABLE + NAPS_FLOW + NAPS_MAIN
    returncode, output = _run_and_lose_the_head(own_head, tmp_path, script, "A READ OF THE NODE TABLE HANGS", 1)
    _check_unfinished_runs_crashed(own_head, returncode, output)


def test_ctrl_c_on_a_flow_on_a_ray_head_stays_a_cancellation(own_head: Head, interrupt_taskloom_run: Any) -> None:
    run = interrupt_taskloom_run(
        "ray", signal.SIGINT, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", TASKLOOM_RUNNERS_RAY_ADDRESS=own_head.address
    )
    run.check(signal.SIGINT, cut_off=("Cancelled", "Crashed"))
    assert "Cancelled" in run.states(), run.task_runs
    assert not [m for _, m in run.task_runs.values() if "HeadLostError" in (m or "")], run.task_runs
    assert "Lost the Ray head" not in run.output, run.output[-3000:]
