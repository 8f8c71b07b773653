"""`PebbleTaskRunner`: task runs in pebble's worker processes; a timeout stops the worker.

A process runner, in one page, on the public runner contract (`taskloom.runners`):

* calls and outcomes cross as bytes in taskloom's wire format (`CallEncoder`, `decode_call`,
  `encode_outcome`): tasks defined in a script travel by value, an argument or a result that
  cannot be pickled is one sentence naming the task;
* it declares `Capability.ENFORCES_TIMEOUTS`: the engine in the worker starts no timer, pebble
  kills the worker process at the task's deadline, and this runner's future raises
  `TaskRunTimedOut`, which the core turns into `TimedOut` (and a retry, if the task has any);
* a worker that dies otherwise ends its run `Crashed` through the exception pebble raises.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future
from typing import Any

from taskloom.runners import (
    CallEncoder,
    Capability,
    TaskRunCall,
    TaskRunner,
    TaskRunTimedOut,
    decode_call,
    dumps,
    encode_outcome,
    loads,
    run_task_call,
    upstream_handles,
)

__all__ = ["PebbleTaskRunner"]


def _run_in_worker(call_bytes: bytes, upstream_bytes: bytes) -> bytes:
    """What a pebble worker runs: a call in, its outcome out, both as bytes."""
    call = decode_call(call_bytes)
    return encode_outcome(call, run_task_call(call, *loads(upstream_bytes)))


def _settle(outcome: Future[Any], work: Any, timeout: float | None) -> None:
    """Hand pebble's result to the future the core follows, naming a timeout as such."""
    if outcome.done():  # cancelled by the core meanwhile
        return
    if work.cancelled():
        outcome.cancel()
        outcome.set_running_or_notify_cancel()
        return
    error = work.exception()
    if isinstance(error, TimeoutError):
        outcome.set_exception(
            TaskRunTimedOut(f"Task run exceeded timeout of {timeout:g} second(s)")
        )
    elif error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(work.result())  # the outcome's bytes: the core loads them


class PebbleTaskRunner(TaskRunner):
    """Runs each task run in one of ``max_workers`` processes (default: one per CPU)."""

    name = "pebble"
    concurrency = "parallel"
    capabilities = Capability.CANCEL | Capability.ENFORCES_TIMEOUTS

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}.")
        self.max_workers = max_workers
        self._pool: Any = None

    def __enter__(self) -> PebbleTaskRunner:
        from pebble import ProcessPool  # imported here: other runners never pay for it

        self._pool = ProcessPool(
            max_workers=self.max_workers or multiprocessing.cpu_count(),
            context=multiprocessing.get_context("spawn"),
        )
        self._encoder = CallEncoder("the pebble workers")
        return self

    def __exit__(self, *exc_info: object) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop() if exc_info[0] is not None else pool.close()  # interrupted: stop now
            pool.join()

    def submit(self, call: TaskRunCall) -> Future[Any]:
        if self._pool is None:
            raise RuntimeError(f"{self!r} was used outside a flow run (it is not started).")
        blob = self._encoder.encode(call)  # raises one sentence if the call cannot go
        # Upstream runs are waited for here and passed as final states (simple, and correct).
        upstream = dumps(upstream_handles(call, lambda native: False))
        timeout = call.task.timeout_seconds
        work = self._pool.schedule(_run_in_worker, args=(blob, upstream), timeout=timeout)
        outcome: Future[Any] = Future()
        work.add_done_callback(lambda done: _settle(outcome, done, timeout))
        outcome.add_done_callback(lambda done: done.cancelled() and work.cancel())
        return outcome

