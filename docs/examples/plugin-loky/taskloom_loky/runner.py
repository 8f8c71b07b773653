"""`LokyTaskRunner`: task runs in the worker processes of loky's reusable executor.

The runner only moves calls, as bytes in taskloom's wire format; `run_task_call` does
everything a task run means, in the worker.
"""

from __future__ import annotations

from concurrent.futures import Future

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


def _run_in_worker(call_bytes: bytes, upstream_bytes: bytes) -> bytes:
    """What a loky worker runs: a call in, its outcome out, both as bytes."""
    call = decode_call(call_bytes)
    return encode_outcome(call, run_task_call(call, *loads(upstream_bytes)))


class LokyTaskRunner(TaskRunner):
    """Runs each task run in a worker process of loky's reusable executor.

    ``max_workers`` bounds the worker processes (``None``: one per CPU); ``timeout`` is how
    many seconds an idle worker waits for work before it exits. The executor is shared by the
    whole process and outlives each flow run: the next flow run finds its workers started.
    """

    name = "loky"
    concurrency = "parallel"
    capabilities = Capability.CANCEL  # loky's futures have cancel()

    def __init__(self, max_workers: int | None = None, timeout: int = 300) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1 (or None for one per CPU), got {max_workers}.")
        if timeout < 1:
            raise ValueError(f"timeout must be at least 1 second, got {timeout}.")
        self.max_workers = max_workers
        self.timeout = timeout

    def __enter__(self) -> LokyTaskRunner:
        self._encoder = CallEncoder("the loky workers")
        return self

    def submit(self, call: TaskRunCall) -> Future[bytes]:
        from loky import get_reusable_executor  # type: ignore[import-untyped]  # only when used

        blob = self._encoder.encode(call)  # raises one sentence if the call cannot go
        # loky's futures cannot be pickled to a worker, so none is "native": the upstream
        # runs' final states go instead, waited for here.
        upstream = dumps(upstream_handles(call, lambda native: False))
        # The process's shared executor: loky starts a fresh one if a worker died and broke it.
        executor = get_reusable_executor(max_workers=self.max_workers, timeout=self.timeout)
        work: Future[bytes] = executor.submit(_run_in_worker, blob, upstream)
        return work  # its result is the outcome's bytes, which the core loads
