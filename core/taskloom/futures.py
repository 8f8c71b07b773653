"""Futures: handles on task runs that a runner is executing.

`TaskFuture` is the protocol users and runners see; `wait`, `as_completed` and
`TaskFutureList` work on any of them. `TaskRunFuture` is the core's one implementation
(`taskloom._run_future`): it replays a run's events in the flow's process and settles on the
run's final state.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from ._run_future import TaskRunFuture
from .states import State

if TYPE_CHECKING:
    from .context import TaskRun

__all__ = [
    "DoneAndNotDoneFutures",
    "TaskFuture",
    "TaskFutureList",
    "TaskRunFuture",
    "as_completed",
    "resolve_futures_to_results",
    "resolve_futures_to_states",
    "wait",
]

R = TypeVar("R", covariant=True)
T = TypeVar("T")

@runtime_checkable
class TaskFuture(Protocol[R]):
    """A handle on a task run submitted to a runner."""

    @property
    def task_run(self) -> TaskRun: ...

    @property
    def state(self) -> State:
        """The run's latest known state (final once `done()` is true)."""
        ...

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """Wait for the run and return its value, or raise why it did not complete."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run is final; return whether it is."""
        ...

    def done(self) -> bool: ...

    def add_done_callback(self, fn: Callable[[TaskFuture[R]], object]) -> None:
        """Call ``fn(future)`` once the run is final (at once if it already is).

        As with `concurrent.futures`, `wait` and `result` may return before the callbacks
        have run; the flow run ends only after they have.
        """
        ...


class DoneAndNotDoneFutures(NamedTuple, Generic[T]):
    done: set[TaskFuture[T]]
    not_done: set[TaskFuture[T]]


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number, got {timeout}")


def wait(
    futures: Iterable[TaskFuture[T]], timeout: float | None = None
) -> DoneAndNotDoneFutures[T]:
    """Wait for all ``futures`` to be final, or until ``timeout``; return (done, not_done).

    Reaching the timeout is not an error: the runs not final yet are in ``not_done``.
    """
    _check_timeout(timeout)
    futures = list(dict.fromkeys(futures))
    deadline = None if timeout is None else time.monotonic() + timeout
    done: set[TaskFuture[T]] = set()
    not_done: set[TaskFuture[T]] = set()
    for future in futures:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        (done if future.wait(left) else not_done).add(future)
    return DoneAndNotDoneFutures(done, not_done)


def as_completed(
    futures: Iterable[TaskFuture[T]], timeout: float | None = None
) -> Iterator[TaskFuture[T]]:
    """Yield ``futures`` as their runs become final (those already final first); raise
    `TimeoutError` (``"2 (of 6) futures unfinished"``) when ``timeout`` seconds pass first."""
    _check_timeout(timeout)
    return _as_completed(list(dict.fromkeys(futures)), timeout)


def _as_completed(pending: list[TaskFuture[T]], timeout: float | None) -> Iterator[TaskFuture[T]]:
    total = len(pending)
    finished: queue.SimpleQueue[TaskFuture[T]] = queue.SimpleQueue()
    for future in pending:
        future.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for yielded in range(total):
        left = None if deadline is None else deadline - time.monotonic()
        try:
            # A future final already was put at once; get_nowait yields it even at timeout 0.
            future = finished.get_nowait() if left is not None and left <= 0 else finished.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(f"{total - yielded} (of {total}) futures unfinished") from None
        yield future


class TaskFutureList(list[TaskFuture[T]]):
    """What `Task.map` returns: a list of futures that can also wait for, or return, them all
    (Prefect 3's ``PrefectFutureList``)."""

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every run is final, or ``timeout`` seconds; never raises for the timeout."""
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[T]:
        """The runs' results in list order; raises the first failure as soon as it is known."""
        _check_timeout(timeout)
        results: dict[int, Any] = {}
        try:
            for future in as_completed(self, timeout=timeout):
                results[id(future)] = future.result(raise_on_failure=raise_on_failure)
        except TimeoutError as exc:
            if "futures unfinished" not in str(exc):
                raise  # a task's own TimeoutError
            raise TimeoutError(
                f"Timed out waiting for all futures to complete within {timeout} seconds"
            ) from exc
        return [results[id(future)] for future in self]


def resolve_futures_to_states(expr: Any) -> Any:
    """``expr`` rebuilt with every future in it (in lists, tuples, sets, dicts, dataclasses,
    attrs and pydantic models) replaced by its run's final state; waits for the runs."""

    def to_state(future: TaskFuture[Any]) -> State:
        future.wait()
        return future.state

    return _resolve_futures(expr, to_state)


def resolve_futures_to_results(expr: Any) -> Any:
    """``expr`` rebuilt with every future in it replaced by its run's result; waits for the
    runs and raises if one did not complete."""

    def to_result(future: TaskFuture[Any]) -> Any:
        future.wait()
        if not future.state.is_completed():
            raise Exception("At least one result did not complete successfully")
        return future.result()

    return _resolve_futures(expr, to_result)


def _resolve_futures(expr: Any, resolve: Callable[[TaskFuture[Any]], Any]) -> Any:
    from ._walk import walk

    resolved: dict[int, Any] = {}

    def leaf(item: Any) -> Any:
        if isinstance(item, TaskRunFuture):
            key = id(item)
            if key not in resolved:
                resolved[key] = resolve(item)
            return resolved[key]
        return item

    # A `quote`d value is a leaf of `walk`: it is passed as it is, as in Prefect.
    return walk(expr, leaf)
