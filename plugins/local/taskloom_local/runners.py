"""The in-process runners: one task run after another, or many on a thread pool."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future
from typing import Any

from taskloom.runners import (
    Capability,
    CompletedNative,
    TaskRunCall,
    TaskRunner,
    run_task_call,
    upstream_handles,
)

from ._pool import _PoolRun, _Threads

__all__ = ["ConcurrentTaskRunner", "SequentialTaskRunner", "ThreadPoolTaskRunner"]


def _is_native(native: Any) -> bool:
    # Handles of this process: pool runs, already-finished inline runs, and the process
    # runner's futures (a parent flow's runs), whose result is the run's outcome too.
    return isinstance(native, (_PoolRun, CompletedNative, Future))


class SequentialTaskRunner(TaskRunner):
    """Runs each task run to its end inside ``submit``, in the flow's thread."""

    name = "sequential"
    concurrency = "sequential"
    capabilities = Capability.LIVE_EVENTS

    def submit(self, call: TaskRunCall) -> CompletedNative:
        handles = upstream_handles(call, _is_native) if call.upstream else ()
        return CompletedNative(run_task_call(call, *handles))


class ConcurrentTaskRunner(TaskRunner):
    """Runs task runs on a pool of threads in the flow's process.

    ``max_workers=None`` (the default, as in Prefect) sets no bound: runs that wait on
    blocked threads get threads of their own, while a burst of short runs shares a few (see
    `_Threads`); give a number to bound the pool. Each run sees the
    submitting thread's context, so a task can submit tasks of the same flow; a task that
    waits for a run that has not started runs it itself, so a bounded pool does not deadlock.
    """

    name = "concurrent"
    concurrency = "concurrent"
    capabilities = Capability.LIVE_EVENTS | Capability.CANCEL | Capability.RUN_WAITING_INLINE

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}.")
        self.max_workers = max_workers
        self._pool: _Threads | None = None

    def __enter__(self) -> ConcurrentTaskRunner:
        self._pool = _Threads(self.max_workers or 1 << 20)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            # After an error or an interrupt: cancel what has not started, and do not wait
            # for running tasks (a thread cannot be stopped; it finishes on its own).
            failed = exc_info[0] is not None
            self._pool.shutdown(wait=not failed, cancel=failed)
            self._pool = None

    def submit(self, call: TaskRunCall) -> _PoolRun:
        if self._pool is None:
            raise RuntimeError(f"{self!r} was used outside a flow run (it is not started).")
        # Most runs have no upstream runs: no frames for their handles.
        handles = upstream_handles(call, _is_native) if call.upstream else ()
        run = _PoolRun(call, handles, contextvars.copy_context())
        waiting_for = [h for h in handles if type(h) is _PoolRun and not h.done()] if handles else None
        if waiting_for:
            _when_done(waiting_for, self._pool, run)
        else:
            self._pool.submit(run)
        return run


def _when_done(upstream: list[_PoolRun], pool: _Threads, run: _PoolRun) -> None:
    """Queue ``run`` once its upstream runs have ended, from the thread that ends the last.

    A thread given the run now would only wait for them, and the pool would grow for a
    thread that waits; the thread that ends the last one takes the run next instead (a
    chain of runs stays on one thread, `_Threads.follow`). A task run that waits for
    ``run`` meanwhile still runs it itself (`_PoolRun.run_here`).
    """
    # A countdown, not a look at every upstream run per callback: a run that reduces
    # thousands of mapped runs would otherwise scan them all at each one's end.
    left = [len(upstream)]
    lock = threading.Lock()

    def ready(finished: _PoolRun) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            pool.follow(finished, run)

    for handle in upstream:
        handle.add_done_callback(ready)


#: Prefect 3's name for the same runner; registered as ``threads``.
ThreadPoolTaskRunner = ConcurrentTaskRunner
