"""`get_dask_client()`: a Dask client inside a task run, for submitting more Dask work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["get_dask_client"]


@contextmanager
def get_dask_client(timeout: float | str | None = None) -> Iterator[Any]:
    """A `distributed.Client` on the cluster that runs this task run, as a context manager.

    On a worker it is `distributed.worker_client`: the task leaves the worker's thread pool
    while the block runs, so waiting for the work it submits cannot starve the worker. Dask
    collections computed inside the block (``dask.array``, ``dask.dataframe``, ``dask.bag``)
    run on the same cluster. A task called directly in a flow's body gets the runner's client::

        @task
        def total(n):
            with get_dask_client() as client:
                return sum(client.gather(client.map(square, range(n))))
    """
    from distributed import get_worker, worker_client

    try:
        get_worker()
    except ValueError:
        from .runner import active_client

        client = active_client.get()
        if client is None:
            raise RuntimeError(
                "get_dask_client() found no Dask cluster: call it inside a task run of a flow "
                "whose task_runner is DaskTaskRunner."
            ) from None
        yield client
        return
    from dask.context import thread_state

    if not hasattr(thread_state, "key"):
        # A task with timeout_seconds runs on the engine's helper thread (so that its run
        # can end TimedOut on time), while the worker's own thread waits for it: only that
        # thread could leave the worker's pool, and waiting on Dask from here could starve it.
        raise RuntimeError(
            "get_dask_client() cannot be used in a task with timeout_seconds on Dask: the task "
            "runs on a helper thread that cannot leave the worker's thread pool. Drop the "
            "task's timeout_seconds, or bound the Dask work itself "
            "(distributed.wait(futures, timeout=...))."
        )
    with worker_client(timeout=timeout) as client:
        yield client
