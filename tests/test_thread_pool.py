"""The thread runner's pool: as many threads as blocked runs need, never more than asked.

Beyond `ThreadPoolExecutor`'s default size the pool starts threads only for runs that would
otherwise wait on blocked threads (taskloom_local._pool._Threads). These tests hold runs
at a barrier that opens only when enough of them run at once; the barrier's timeout is a
guard against a hang, not a measure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from taskloom import flow, task
from taskloom_local import ConcurrentTaskRunner, _pool
from taskloom_local._pool import _EAGER

GUARD = 60  # seconds a barrier waits before it breaks: only a broken pool gets there


def test_blocked_runs_beyond_the_default_pool_size_all_run_at_once() -> None:
    parties = 3 * _EAGER + 1
    barrier = threading.Barrier(parties, timeout=GUARD)

    @task
    def meet(i: int) -> int:
        barrier.wait()  # returns only once every run is waiting here, each on its own thread
        return i

    @flow(task_runner="threads")
    def gather() -> list[int]:
        return [f.result() for f in meet.map(range(parties))]

    assert gather() == list(range(parties))


def test_max_workers_bounds_the_runs_at_once_when_the_pool_grows() -> None:
    bound = _EAGER + 2
    lock = threading.Lock()
    running = [0]
    most = [0]
    first = threading.Barrier(bound, timeout=GUARD)
    rest = threading.Barrier(4, timeout=GUARD)

    @task
    def hold(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            # The first `bound` runs (the queue is first in, first out) wait for each other,
            # so the pool must grow past its eager threads; had it grown past `bound`, the
            # last 4 would start beside them.
            (first if i < bound else rest).wait()
        finally:
            with lock:
                running[0] -= 1
        return i

    @flow(task_runner=ConcurrentTaskRunner(max_workers=bound))
    def bounded() -> list[Any]:
        return [f.result() for f in hold.map(range(bound + 4))]

    assert bounded() == list(range(bound + 4))
    assert most[0] == bound


def test_blocked_runs_get_threads_after_a_burst_of_short_runs() -> None:
    # A burst leaves every thread idle; the next runs must still each find a thread (or get
    # one), however many runs the pool has seen end before.
    parties = _EAGER + 3
    barrier = threading.Barrier(parties, timeout=GUARD)

    @task
    def quick(i: int) -> int:
        return i

    @task
    def meet(i: int) -> int:
        barrier.wait()
        return i

    @flow(task_runner="threads")
    def burst_then_meet() -> list[int]:
        assert sum(f.result() for f in quick.map(range(2000))) == sum(range(2000))
        return [f.result() for f in meet.map(range(parties))]

    assert burst_then_meet() == list(range(parties))


def _pool_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("taskloom-task-")}


def test_a_burst_of_short_runs_does_not_start_a_thread_for_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runs hold the CPU; other processes on a loaded machine must not make the process
    # look idle to the watch, so its CPU time is pinned to keep pace with the wall clock.
    monkeypatch.setattr(_pool, "_cpu_time", time.monotonic)
    before = _pool_threads()
    during: list[int] = []

    @task
    def quick(i: int) -> int:
        return i

    @flow(task_runner="threads")
    def burst() -> int:
        total = sum(f.result() for f in [quick.submit(i) for i in range(2000)])
        during.append(len(_pool_threads() - before))
        return total

    assert burst() == sum(range(2000))
    # The eager threads and the watch; the pool doubles only after the process sat idle
    # with runs waiting, which a burst of runs that hold the CPU does not do. (A thread per
    # run that found none idle came to about 44 per thousand runs.)
    assert during[0] <= 2 * _EAGER + 1


def test_the_pools_threads_end_with_the_flow_run_and_after_an_error() -> None:
    before = _pool_threads()
    release = threading.Event()

    @task
    def meet(i: int) -> int:
        release.wait(GUARD)
        return i

    @flow(task_runner="threads")
    def grows() -> list[int]:
        futures = meet.map(range(2 * _EAGER))  # more than the eager threads: the watch starts
        release.set()
        return [f.result() for f in futures]

    assert grows() == list(range(2 * _EAGER))
    assert not {t for t in _pool_threads() - before if t.is_alive()}

    release.clear()

    def open_once_grown() -> None:
        # Past the eager threads and the watch: the pool has grown when the flow ends.
        for _ in range(GUARD * 100):
            if len(_pool_threads() - before) > _EAGER + 1:
                break
            time.sleep(0.01)
        release.set()

    @flow(task_runner="threads")
    def fails() -> None:
        meet.map(range(2 * _EAGER))
        threading.Thread(target=open_once_grown, daemon=True).start()
        raise RuntimeError("the flow's own error")

    state = fails(return_state=True)
    assert state.is_failed()
    for thread in _pool_threads() - before:
        thread.join(GUARD)
        assert not thread.is_alive(), thread.name


def test_runs_waiting_for_an_upstream_run_do_not_take_a_thread_meanwhile() -> None:
    release = threading.Event()

    @task
    def slow() -> int:
        release.wait(GUARD)
        return 1

    @task
    def after(x: int) -> int:
        return x + 1

    @task
    def independent() -> str:
        return "ran"

    @flow(task_runner=ConcurrentTaskRunner(max_workers=2))
    def pipeline() -> tuple[str, list[int]]:
        first = slow.submit()
        waiting = [after.submit(first) for _ in range(5)]
        # One thread holds `slow`; had the five runs that need its result taken the other
        # and waited there, this run would find no thread until `slow` ends.
        alone = independent.submit().result(timeout=GUARD)
        release.set()
        return alone, [f.result() for f in waiting]

    assert pipeline() == ("ran", [2, 2, 2, 2, 2])


def test_a_chain_of_runs_stays_on_the_thread_that_ran_its_first_link() -> None:
    # Each link waits for the one before it; the thread that ends a link runs the next one
    # itself instead of handing it to a waiting thread (a context switch per link).
    release = threading.Event()

    @task
    def first() -> list[str]:
        release.wait(GUARD)
        return [threading.current_thread().name]

    @task
    def link(names: list[str]) -> list[str]:
        return [*names, threading.current_thread().name]

    @flow(task_runner="threads")
    def chain() -> list[str]:
        future = first.submit()
        for _ in range(20):
            future = link.submit(future)
        release.set()  # every link waits on the one before it by now
        return future.result(timeout=GUARD)

    names = chain()
    assert len(names) == 21
    assert set(names) == {names[0]}, names
    assert names[0].startswith("taskloom-task-")
