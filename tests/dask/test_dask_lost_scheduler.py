"""A scheduler that dies mid-flow: unfinished runs crash naming its address, never "interrupted".

On a cluster of its own (``dask scheduler --no-dashboard`` and one worker, in their own
process groups), since the test kills its scheduler.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from taskloom import flow
from taskloom.testing import _tasks as t
from taskloom_dask import DaskTaskRunner

pytestmark = [pytest.mark.dask, pytest.mark.slow]


# From the conformance kit's module: the cluster's workers import it by name.
nap = t.interval.with_options(retries=1, retry_delay_seconds=0)


@pytest.fixture
def doomed_cluster(new_process_cluster: Any) -> Any:
    """A scheduler without a dashboard and one two-thread worker; the test kills the scheduler."""
    return new_process_cluster(workers=1, scheduler_args=("--no-dashboard",), nthreads=2)


def test_a_lost_scheduler_crashes_unfinished_runs_naming_its_address(
    doomed_cluster: Any, run_logs: Any
) -> None:
    futures: list[Any] = []
    scheduler = doomed_cluster.processes[0]

    def kill_scheduler_once_runs_finish() -> None:
        # Once a few runs have completed (the cluster works), the scheduler dies as in an
        # out-of-memory kill: no goodbye to the client.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sum(1 for f in list(futures) if f.state.is_completed()) >= 4:
                break
            time.sleep(0.05)
        os.killpg(scheduler.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_scheduler_once_runs_finish, daemon=True)

    @flow(task_runner=DaskTaskRunner(address=doomed_cluster.address))
    def many_naps() -> None:
        killer.start()
        for _ in range(60):
            futures.append(nap.submit(0.2))

    state = many_naps(return_state=True)
    killer.join(timeout=10)
    states = [f.state for f in futures]
    completed = [s for s in states if s.is_completed()]
    crashed = [s for s in states if s.is_crashed()]
    assert len(completed) >= 4 and crashed, [s.name for s in states]
    assert not [s for s in states if s.is_cancelled()], "losing the scheduler is not a cancellation"
    assert len(completed) + len(crashed) == len(states), [s.name for s in states]
    assert state.is_failed() and (state.message or "").startswith(f"{len(crashed)}/60 states failed."), state
    for s in crashed:
        assert s.message == (
            "Task run crashed: SchedulerLostError: Lost the connection to the Dask scheduler at "
            f"{doomed_cluster.address} before this run finished; the run's task and any results "
            "kept on the cluster were lost with it."
        ), s.message
    retried = [m for m in run_logs.messages() if m.startswith("Crashed (SchedulerLostError") and "retry 1 of 1" in m]
    assert len(retried) == len(crashed), "each unfinished run spends its retry before it crashes"
    dashboard = [m for m in run_logs.messages() if "dashboard" in m]
    assert dashboard == [], "a scheduler started with --no-dashboard has no dashboard link to give"


def test_a_scheduler_with_a_dashboard_gets_its_link_logged(process_cluster: Any, run_logs: Any) -> None:
    @flow(task_runner=DaskTaskRunner(address=process_cluster.address))
    def one() -> int:
        return t.add.submit(1, 2).result()

    assert one() == 3
    [line] = [m for m in run_logs.messages() if "dashboard" in m]
    assert line.startswith("The Dask dashboard is available at http://127.0.0.1:") and line.endswith("/status")
