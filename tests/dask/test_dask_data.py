"""Where data lives on Dask: results stay on the workers until asked for, then are freed."""

from __future__ import annotations

import gc
import time
from typing import Any

import distributed
import pytest

from taskloom import flow, task
from taskloom.runners import RemoteResult
from taskloom_dask import DaskTaskRunner

pytestmark = [pytest.mark.dask, pytest.mark.slow]

MIB = 1 << 20


@task
def blob(mib: int) -> bytes:
    return b"x" * (mib * MIB)


@task
def size(data: bytes) -> int:
    return len(data)


@task
def small(x: int) -> int:
    return x + 1


@pytest.fixture
def runner(local_cluster: Any) -> DaskTaskRunner:
    return DaskTaskRunner(address=local_cluster.scheduler_address)


def _held_on_workers(local_cluster: Any) -> int:
    """Bytes of task results the scheduler knows the workers hold."""
    with distributed.Client(local_cluster.scheduler_address, set_as_default=False) as client:
        return int(sum(client.nbytes(summary=True).values()))


def test_a_large_result_stays_on_its_worker_until_asked_for(runner: DaskTaskRunner) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=runner)
    def pipeline() -> list[int]:
        blobs = blob.map([8, 8, 8])
        sizes = [s.result() for s in size.map(blobs)]
        blobs[0].wait()
        data = blobs[0].state.data
        seen["during the flow"] = isinstance(data, RemoteResult) and not data.fetched
        seen["blob"] = blobs[0]  # kept beyond the flow run: fetched before the cluster goes
        return sizes

    assert pipeline() == [8 * MIB] * 3
    assert seen["during the flow"], "the blob must not come back to the flow unasked"
    kept = seen["blob"]
    assert kept.state.data.fetched
    assert kept.result() == b"x" * (8 * MIB)
    assert kept.result() is kept.result(), "fetched once, then kept"


def _large_results_settled(runner: DaskTaskRunner, local_cluster: Any, drop_states: bool) -> set[str]:
    """Run two blobs through a flow; return the Dask keys the cluster computed meanwhile."""
    seen: dict[str, Any] = {}

    @flow(task_runner=runner)
    def two_blobs() -> list[int]:
        if drop_states:  # as if the worker's message with the state were lost on the way
            from taskloom_dask import get_dask_client
            from taskloom_dask._worker import TOPIC

            with get_dask_client() as client:
                client.unsubscribe_topic(TOPIC)
        blobs = blob.map([2, 2])
        sizes = [s.result() for s in size.map(blobs)]
        for b in blobs:
            b.wait()
        seen["left on the workers"] = [
            b.state.is_completed() and isinstance(b.state.data, RemoteResult) and not b.state.data.fetched
            for b in blobs
        ]
        return sizes

    observer = distributed.Client(local_cluster.scheduler_address, set_as_default=False)
    with observer, distributed.get_task_stream(client=observer) as stream:
        assert two_blobs() == [2 * MIB] * 2
    assert seen["left on the workers"] == [True, True]
    return {str(row["key"]) for row in stream.data}


def test_a_large_result_settles_from_the_state_its_worker_sent(
    runner: DaskTaskRunner, local_cluster: Any
) -> None:
    keys = _large_results_settled(runner, local_cluster, drop_states=False)
    assert len(keys) == 4
    assert not [k for k in keys if k.endswith("-state")], "no second Dask task per large result"


def test_a_large_result_whose_state_did_not_come_still_stays_on_its_worker(
    runner: DaskTaskRunner, local_cluster: Any
) -> None:
    keys = _large_results_settled(runner, local_cluster, drop_states=True)
    assert len([k for k in keys if k.endswith("-state")]) == 2, "the data stripped on the worker"


def test_a_returned_future_brings_its_result_to_the_caller(runner: Any) -> None:
    @flow(task_runner=runner)
    def returns_a_blob() -> Any:
        return blob.submit(2)

    state = returns_a_blob()  # a returned future comes back as its final state, as in Prefect
    assert state.result() == b"x" * (2 * MIB)


def test_small_results_come_back_with_their_state(runner: DaskTaskRunner) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=runner)
    def plus_one() -> int:
        future = small.submit(1)
        seen["future"] = future
        return small.submit(future).result()  # type: ignore[no-any-return]

    assert plus_one() == 3
    assert seen["future"].state.data == 2, "a small result comes back whole, in one round trip"


def test_cluster_memory_is_released_when_nothing_refers_to_a_result(
    runner: DaskTaskRunner, local_cluster: Any
) -> None:
    before = _held_on_workers(local_cluster)

    @flow(task_runner=runner)
    def twenty_blobs() -> int:
        return sum(s.result() for s in size.map(blob.map([10] * 20)))

    assert twenty_blobs() == 20 * 10 * MIB
    gc.collect()
    deadline = time.monotonic() + 60
    held = _held_on_workers(local_cluster)
    while held > before + MIB and time.monotonic() < deadline:
        time.sleep(0.2)
        held = _held_on_workers(local_cluster)
    assert held <= before + MIB, f"the workers hold {held} bytes after the flow, {before} before"
