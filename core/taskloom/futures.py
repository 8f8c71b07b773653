"""Futures: handles on task runs that a runner is executing.

`TaskFuture` is the protocol users and runners see. `TaskRunFuture` is the core's one
implementation: it wraps whatever the runner returned from ``submit`` (anything shaped like
`concurrent.futures.Future`: a thread-pool future, a Dask future, a Ray ``ObjectRef.future()``),
replays the run's events in the flow's process and settles on the run's final state.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from ._ctx import _task_run_recorder
from .states import Pending, State

if TYPE_CHECKING:
    from .context import TaskRun
    from .engine import TaskRunEvent

__all__ = ["DoneAndNotDoneFutures", "TaskFuture", "TaskRunFuture", "as_completed", "wait"]

R = TypeVar("R", covariant=True)
T = TypeVar("T")

# Guards the hand-over between a finishing run and a thread that starts waiting on it.
_settle_lock = threading.Lock()


def _native_done(future: weakref.ref[TaskRunFuture[Any]], native: Any) -> None:
    alive = future()
    if alive is not None:
        alive._native_done(native)


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
        """Call ``fn(future)`` once the run is final (at once if it already is)."""
        ...


class TaskRunFuture(Generic[T]):
    """The core's `TaskFuture`, over a runner's native concurrent.futures-like handle."""

    __slots__ = (
        "__weakref__",
        "_call",
        "_callbacks",
        "_closed",
        "_context",
        "_driver",
        "_event",
        "_final",
        "_lock",
        "_seq",
        "_state",
        "native",
        "task_run",
    )

    def __init__(self, task_run: TaskRun, driver: Any) -> None:
        self.task_run = task_run
        self.native: Any = None
        self._state: State | None = None  # Pending, made only when someone looks
        self._final: State | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[TaskRunFuture[T]], object]] = []
        self._driver = driver
        self._lock = threading.Lock()
        self._seq = 0  # the last event number the driver handled; it drops repeats
        self._call: Any = None  # kept until final, so the driver can retry a crash
        self._context: Any = None  # the submitter's context, for a hand-over made later
        # Set by whoever gives the run its final state (its outcome, a crash, an interrupt);
        # later events and outcomes of the run are dropped, so its final state never changes.
        self._closed = False

    def __repr__(self) -> str:
        return f"TaskRunFuture({self.task_run.name!r}, state={self.state!r})"

    # -- driver side: fed by the engine's events and the runner's native future -------------

    def _attach(self, native: Any) -> None:
        """Follow the runner's native handle; called once per attempt, right after ``submit``."""
        self.native = native
        # Through a weak reference: a bound method would make this future and its native
        # handle (which keeps its callbacks) a reference cycle, left for the garbage
        # collector to find with everything the run holds. The driver keeps the future
        # alive until it is final.
        native.add_done_callback(functools.partial(_native_done, weakref.ref(self)))

    def _emit(self, event: TaskRunEvent) -> None:
        self._driver._on_event(self, event)

    def _claim(self) -> bool:
        """Take the right to give the run its final state; False if another path has it."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            return True

    def _native_done(self, native: Any) -> None:
        if native is not self.native or self._closed:
            return  # a handle of an earlier attempt, or a run already ended (an interrupt)
        try:
            outcome = native.result()
        except BaseException as exc:  # the runner, not the task, failed: a lost worker
            state = self._driver._on_crash(self, exc)
            if state is not None:
                self._settle(state)
            return
        if type(outcome) is bytes:  # as `encode_outcome` made it on the worker
            outcome = _load_outcome(self, outcome)
        for event in outcome.events:
            self._driver._on_event(self, event)
        if self._claim():
            self._settle(outcome.state)

    def _settle(self, state: State) -> None:
        self._state = state
        self._call = None
        with _settle_lock:
            self._final = state
            event = self._event
        self._driver._on_final(self)
        if event is not None:
            event.set()
        for fn in self._callbacks:
            fn(self)
        self._callbacks.clear()

    # -- the TaskFuture protocol ----------------------------------------------------------

    @property
    def state(self) -> State:
        if self._final is not None:
            return self._final
        if self._state is None:
            self._state = Pending()
        return self._state

    def done(self) -> bool:
        return self._final is not None

    def wait(self, timeout: float | None = None) -> bool:
        if self._final is not None:
            return True
        if self._driver.runs_waiting_inline and _task_run_recorder.get() is not None:
            # Waiting inside a task run: a run that has not started yet is run here, so a
            # bounded pool whose threads all wait on queued runs cannot deadlock.
            native = self.native
            if native is not None and not native.done():
                native.run_here()
        with _settle_lock:
            if self._final is not None:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> T:
        if not self.wait(timeout):
            raise TimeoutError(
                f"Task run {self.task_run.name!r} did not finish within {timeout} seconds."
            )
        assert self._final is not None
        return self._final.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Callable[[TaskRunFuture[T]], object]) -> None:
        with _settle_lock:
            if self._final is None:
                self._callbacks.append(fn)
                return
        fn(self)


def _load_outcome(future: TaskRunFuture[Any], data: bytes) -> Any:
    from ._wire import loads, lost_run_outcome
    from .states import Failed

    try:
        return loads(data)
    except Exception as exc:
        message = (
            f"Task run {future.task_run.name!r} finished, but its result could not be loaded in "
            f"the flow's process ({type(exc).__name__}: {exc}): make what the task returns "
            "importable here, or return a plain value."
        )
        return lost_run_outcome(future._call, Failed(message, exception=exc))


class DoneAndNotDoneFutures(NamedTuple, Generic[T]):
    done: set[TaskFuture[T]]
    not_done: set[TaskFuture[T]]


def wait(
    futures: Iterable[TaskFuture[T]], timeout: float | None = None
) -> DoneAndNotDoneFutures[T]:
    """Wait for all ``futures`` to be final, or until ``timeout``; return (done, not_done)."""
    futures = list(futures)
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
    """Yield ``futures`` as their runs become final; raise `TimeoutError` after ``timeout``."""
    pending = list(dict.fromkeys(futures))
    finished: queue.SimpleQueue[TaskFuture[T]] = queue.SimpleQueue()
    for future in pending:
        future.add_done_callback(finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for yielded in range(len(pending)):
        left = None if deadline is None else deadline - time.monotonic()
        try:
            if left is not None and left <= 0:
                raise queue.Empty
            future = finished.get(timeout=left)
        except queue.Empty:
            raise TimeoutError(
                f"{len(pending) - yielded} of {len(pending)} futures not finished "
                f"within {timeout} seconds."
            ) from None
        yield future
