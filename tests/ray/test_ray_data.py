"""Where data lives on Ray: results stay in the cluster's object store until asked for."""

from __future__ import annotations

import gc
import re
import time
from typing import Any

import pytest

from taskloom import flow, task
from taskloom.runners import RemoteResult

pytestmark = [pytest.mark.ray, pytest.mark.slow]

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


def _object_store_mib() -> int:
    """What the cluster's object stores hold, as Ray's own memory summary says."""
    import ray
    from ray._private.internal_api import memory_summary

    text = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    found = re.search(r"Plasma memory usage (\d+) MiB", text)
    assert found, text
    return int(found.group(1))


def test_a_large_result_stays_on_the_cluster_until_asked_for(head_runner: Any) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
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


def test_a_returned_future_brings_its_result_to_the_caller(head_runner: Any) -> None:
    @flow(task_runner=head_runner)
    def returns_a_blob() -> Any:
        return blob.submit(2)

    state = returns_a_blob()  # a returned future comes back as its final state, as in Prefect
    assert state.result() == b"x" * (2 * MIB)


@task
def mixed() -> dict[str, Any]:
    return {"bytes": b"b" * MIB, "text": "é" * MIB, "array": bytearray(b"a" * MIB), "many": ["x" * 100] * 20_000}


@task
def same(value: dict[str, Any]) -> dict[str, Any]:
    return value


def test_a_large_result_of_several_values_travels_whole(head_runner: Any) -> None:
    @flow(task_runner=head_runner)
    def passes_on() -> tuple[Any, Any]:
        first = mixed.submit()
        return first.result(), same.submit(first).result()

    made, passed = passes_on()
    assert made == passed == mixed.fn()
    assert type(passed["array"]) is bytearray


def test_small_results_come_back_with_their_state(head_runner: Any) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def plus_one() -> int:
        future = small.submit(1)
        seen["future"] = future
        return small.submit(future).result()  # type: ignore[no-any-return]

    assert plus_one() == 3
    assert seen["future"].state.data == 2, "a result under Ray's inline size comes back whole"


def test_cluster_memory_is_released_when_nothing_refers_to_a_result(head_runner: Any) -> None:
    gc.collect()
    before = _object_store_mib()

    @flow(task_runner=head_runner)
    def twenty_blobs() -> int:
        return sum(s.result() for s in size.map(blob.map([10] * 20)))

    assert twenty_blobs() == 20 * 10 * MIB
    gc.collect()
    deadline = time.monotonic() + 60
    held = _object_store_mib()
    while held > before + 10 and time.monotonic() < deadline:
        time.sleep(0.5)
        gc.collect()
        held = _object_store_mib()
    assert held <= before + 10, f"the object store holds {held} MiB after the flow, {before} MiB before"
