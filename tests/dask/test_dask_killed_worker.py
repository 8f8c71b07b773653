"""A worker process that dies mid-task: Dask reschedules it, then gives up, and the run crashes.

On a cluster of its own (one worker, ``allowed-failures`` 1), so the session's clusters stay
healthy.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom import flow, task
from taskloom.testing import _tasks as t
from taskloom_dask import DaskTaskRunner

pytestmark = [pytest.mark.dask, pytest.mark.slow]


@task
def die(marker: str) -> None:
    """Note the attempt, then kill this worker process as an out-of-memory killer would."""
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


@task(retries=1)
def die_twice(marker: str) -> str:
    """Dies on its first two attempts (both of Dask's), lives on the third (the flow's retry)."""
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(marker) as f:
        if len(f.read().split()) <= 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@pytest.fixture(scope="module")
def fragile_cluster() -> Iterator[Any]:
    import dask
    from distributed import LocalCluster

    # The scheduler reads allowed-failures when it starts: one retry, then KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
    try:
        yield cluster
    finally:
        cluster.close()


def test_a_killed_worker_ends_in_crashed_with_killed_worker(
    fragile_cluster: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "attempts.txt"
    seen: dict[str, Any] = {}

    @flow(task_runner=DaskTaskRunner(address=fragile_cluster.scheduler_address))
    def killing() -> None:
        seen["killed"] = killed = die.submit(str(marker))
        seen["after"] = t.identity.submit(killed)

    state = killing(return_state=True)
    killed, after = seen["killed"].state, seen["after"].state
    assert killed.is_crashed(), killed
    assert "KilledWorker" in (killed.message or ""), killed.message
    attempts = marker.read_text().split()
    assert len(attempts) == 2, "Dask reschedules a task whose worker died (allowed-failures 1)"
    assert after.is_pending() and after.name == "NotReady", after
    assert state.is_failed()

    @flow(task_runner=DaskTaskRunner(address=fragile_cluster.scheduler_address))
    def still_works() -> int:
        return t.add.submit(1, 1).result()

    assert still_works() == 2, "the cluster (restarted worker) keeps serving later flows"


def test_a_crash_is_retried_when_the_task_has_retries(fragile_cluster: Any, tmp_path: Path) -> None:
    """KilledWorker is a crash: a task with retries left runs again; its downstream waits."""
    marker = tmp_path / "attempts.txt"
    seen: dict[str, Any] = {}

    @flow(task_runner=DaskTaskRunner(address=fragile_cluster.scheduler_address))
    def retrying() -> str:
        seen["survivor"] = survivor = die_twice.submit(str(marker))
        return t.identity.submit(survivor).result()

    assert retrying() == "survived"
    assert len(marker.read_text().split()) == 3
    assert seen["survivor"].state.is_completed()


def test_ctrl_c_on_taskloom_run_ends_every_task_run(interrupt_taskloom_run: Any) -> None:
    """``taskloom run --runner dask`` (a temporary LocalCluster), Ctrl-C once a run started:
    exit 130, and no run of the flow run left Pending or Running in the history."""
    run = interrupt_taskloom_run("dask", signal.SIGINT)
    # A run that started is Crashed once its Running state has come back (events come in
    # batches every 0.2 s); before that the driver cancels it on Dask as not started.
    run.check(signal.SIGINT, cut_off=("Crashed", "Cancelled"))
