"""`LokyTaskRunner`: task runs in the worker processes of loky's reusable executor.

The runner only moves calls. Everything a task run means (states, logs, the Failed state
with the task's own exception) is done by `taskloom.runners.run_task_call` in the worker. The
call travels as bytes in taskloom's wire format (`CallEncoder`: a task defined in a script goes
by value, an argument that cannot be pickled is named in one sentence), and so does the
`TaskRunOutcome`, with the run's states and log lines inside, which the flow's process replays
in order.
"""

from __future__ import annotations

import threading
from concurrent.futures import BrokenExecutor, Future
from typing import Any

from taskloom.runners import (
    CallEncoder,
    Capability,
    TaskRunCall,
    TaskRunner,
    decode_call,
    dumps,
    encode_outcome,
    loads,
    run_task_call,
    upstream_handles,
)

__all__ = ["LokyTaskRunner"]


def _never_native(native: Any) -> bool:
    # This runner's handles are concurrent.futures.Future objects of the flow's process: they
    # cannot be pickled to a worker. Saying "not native" makes `upstream_handles` wait for each
    # upstream run here and pass its final state, which pickles.
    return False


def _run_in_worker(call_bytes: bytes, upstream_bytes: bytes) -> bytes:
    """What a loky worker runs: a call in, its outcome out, both as bytes."""
    call = decode_call(call_bytes)
    return encode_outcome(call, run_task_call(call, *loads(upstream_bytes)))


class LokyTaskRunner(TaskRunner):
    """Runs each task run in a worker process of loky's reusable executor.

    ``max_workers`` bounds the worker processes (``None``: one per CPU); ``timeout`` is how
    many seconds an idle worker waits for work before it exits. The executor is shared by
    every flow in this process and outlives each flow run, which is its point: the second
    flow run finds its workers started and its imports done.
    """

    name = "loky"
    concurrency = "parallel"
    #: Its handles are concurrent.futures.Future objects, which have ``cancel()``: the core
    #: drops the runs that have not started when a flow run is interrupted.
    capabilities = Capability.CANCEL

    def __init__(self, max_workers: int | None = None, timeout: int = 300) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1 (or None for one per CPU), got {max_workers}.")
        if timeout < 1:
            raise ValueError(f"timeout must be at least 1 second, got {timeout}.")
        self.max_workers = max_workers
        self.timeout = timeout
        self._executor: Any = None
        self._lock = threading.Lock()
        self._queued: set[Future[Any]] = set()

    def __repr__(self) -> str:
        return f"LokyTaskRunner(max_workers={self.max_workers!r}, timeout={self.timeout!r})"

    def duplicate(self) -> LokyTaskRunner:
        return type(self)(max_workers=self.max_workers, timeout=self.timeout)

    def __enter__(self) -> LokyTaskRunner:
        self._executor = self._get_executor()
        self._encoder = CallEncoder("the loky workers")
        return self

    def _get_executor(self) -> Any:
        # Imported here, not at module level: a flow on another runner never pays for loky.
        from loky import get_reusable_executor  # type: ignore[import-untyped]

        # The shared executor, resized to max_workers; a new one if the last one broke.
        return get_reusable_executor(max_workers=self.max_workers, timeout=self.timeout)

    def __exit__(self, *exc_info: object) -> None:
        # The flow run has waited for all its task runs unless it is being interrupted. The
        # executor is shared, so it is not shut down (loky stops idle workers by itself):
        # only this run's calls that have not started yet are cancelled.
        if exc_info[0] is not None:
            with self._lock:
                queued = list(self._queued)
            for future in queued:
                future.cancel()
        self._executor = None

    def submit(self, call: TaskRunCall) -> Future[Any]:
        if self._executor is None:
            raise RuntimeError(f"{self!r} was used outside a flow run (it is not started).")
        # Waits, in the flow's thread, for the runs this one takes as inputs: simple, and
        # correct, but it holds up the flow body while an upstream run is still going.
        blob = self._encoder.encode(call)  # raises one sentence if the call cannot go
        upstream = dumps(upstream_handles(call, _never_native))
        try:
            work = self._executor.submit(_run_in_worker, blob, upstream)
        except BrokenExecutor:
            # A worker died (killed, out of memory, a segfault) and loky broke the whole pool:
            # the runs it held were reported Crashed; later ones go to a fresh pool.
            self._executor = self._get_executor()
            work = self._executor.submit(_run_in_worker, blob, upstream)
        with self._lock:
            self._queued.add(work)
        work.add_done_callback(self._forget)
        return work  # its result is the outcome as bytes, which the core loads

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._queued.discard(future)
