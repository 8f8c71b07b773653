"""`TaskRunFuture`: the core's one `TaskFuture`, and the owner of a task run's state in the
flow's process.

It wraps whatever the runner returned from ``submit`` (anything shaped like
`concurrent.futures.Future`: a thread-pool future, a Dask future, a Ray
``ObjectRef.future()``), replays the run's events in the flow's process and settles on the
run's final state. Its public face is the `TaskFuture` protocol (`taskloom.futures`).
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._current import _task_run_recorder
from .states import Pending, State, StateType, _mark_run, _new_state

if TYPE_CHECKING:
    from ._events import TaskRunEvent, TaskRunOutcome
    from .context import TaskRun

__all__ = ["RunOwner", "TaskRunFuture"]

T = TypeVar("T")

# Guards the hand-over between a finishing run and a thread that starts waiting on it.
_settle_lock = threading.Lock()


def _native_done(future: weakref.ref[TaskRunFuture[Any]], native: Any) -> None:
    alive = future()
    if alive is not None:
        alive._native_done(native)


class RunOwner(Protocol):
    """What a future reports to: its flow run's driver (`taskloom._driver`), the layer above,
    which makes the futures, so this module does not import it. The future changes the run's
    state; the owner hears of it (the hooks), counts it and lets the run go."""

    #: Observers of task runs (the plugin hooks), or None when nothing observes them.
    created_hook: Callable[..., object] | None
    state_hook: Callable[..., object] | None
    #: Read as each run settles: tag slots to free (None: no limits) and open child runs.
    limits: Any
    children: Any
    #: A task run waiting on a queued run of this runner runs it (`Capability.RUN_WAITING_INLINE`).
    runs_waiting_inline: bool

    def pass_on(self, future: TaskRunFuture[Any], event: TaskRunEvent) -> None: ...
    def load_outcome(self, future: TaskRunFuture[Any], data: bytes) -> TaskRunOutcome: ...
    def on_crash(self, future: TaskRunFuture[Any], exc: BaseException) -> State | None: ...
    def on_final(self, future: TaskRunFuture[Any]) -> None: ...
    def forget(self, future: TaskRunFuture[Any]) -> None: ...


class TaskRunFuture(Generic[T]):
    """The core's `TaskFuture`, over a runner's native concurrent.futures-like handle."""

    __slots__ = (
        "__weakref__",
        "_call",
        "_callbacks",
        "_closed",
        "_context",
        "_driver",
        "_final",
        "_latch",
        "_lock",
        "_seq",
        "_state",
        "native",
        "task_run",
    )

    def __init__(self, task_run: TaskRun, driver: RunOwner) -> None:
        self.task_run = task_run
        self.native: Any = None
        self._state: State | None = None  # Pending, made only when someone looks
        self._final: State | None = None
        self._latch: threading.Lock | None = None  # held until final, made for a waiter
        # Made by the first done-callback: most runs have none, and each object a queued run
        # holds is one more for the garbage collector to walk.
        self._callbacks: list[Callable[[TaskRunFuture[T]], object]] | None = None
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

    # -- its state: only these methods change it; the driver reports what it decides ------

    def _begin(self, call: Any, context: Any, parameters: Mapping[str, Any]) -> None:
        """The run's first call, before it is handed to the runner (no event can race it,
        so its first state needs no lock): observers hear that it was created, with the
        ``parameters`` its caller gave, and then of its first state, Pending."""
        if self._closed:
            return  # an interrupt ended the run while it was being made
        self._call = call
        self._context = context
        driver = self._driver
        if driver.created_hook is not None:
            driver.created_hook(self.task_run, parameters)
        if driver.state_hook is not None:
            self._state = first = _new_state(StateType.PENDING, "Pending")
            driver.state_hook(self.task_run, None, first)

    def _emit(self, event: TaskRunEvent) -> None:
        """One event of the run, live from its worker or replayed from its outcome."""
        with self._lock:
            if self._closed:
                return  # the run already has its final state (an interrupt ended it)
            if event.seq > 0:
                # Only the next event in order: a repeat was seen live already, and one
                # after a gap waits for the outcome, which replays every event in order.
                if event.seq != self._seq + 1:
                    return
                self._seq = event.seq
            if event.record is not None or event.run is not None:
                self._driver.pass_on(self, event)  # a log record, or a child run's event
                return
            old, self._state = self._state, event.new
            if self._driver.state_hook is not None:
                self._driver.state_hook(self.task_run, old, event.new)

    def _set_state(self, state: State) -> None:
        """A state decided in the flow's process (a crash, a retry, a cancellation)."""
        with self._lock:
            old, self._state = self._state, state
            if self._driver.state_hook is not None:
                self._driver.state_hook(self.task_run, old, state)

    def _retry(self, call: Any) -> None:
        """The next attempt's call: it numbers its events from 1 again."""
        with self._lock:
            self._call = call
            self._seq = 0

    def _interrupt(self) -> State | None:
        """Take the final say for an interrupt: the state the run was last seen in, or
        ``None`` when it already has its final state."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            return self._state if self._state is not None else Pending()

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
            state = self._driver.on_crash(self, exc)
            if state is not None:
                self._settle(state)
            return
        if type(outcome) is bytes:  # as `encode_outcome` made it on the worker
            outcome = self._driver.load_outcome(self, outcome)
        for event in outcome.events:
            self._emit(event)
        with self._lock:  # `_claim`, on every run's path
            if self._closed:
                return
            self._closed = True
        self._settle(outcome.state)

    def _settle(self, state: State) -> None:
        _mark_run(state, self.task_run.id)
        self._state = state
        self._call = None
        with _settle_lock:
            self._final = state
            latch = self._latch
            callbacks, self._callbacks = self._callbacks, None
        driver = self._driver
        if driver.limits is not None or driver.children.open or state.type is not StateType.COMPLETED:
            driver.on_final(self)  # a failure to count, tag slots to free, child runs to end
        if latch is not None:
            latch.release()
        if callbacks is not None:
            for fn in callbacks:
                _call_back(fn, self)
        # Only now: the flow run ends after its runs' done-callbacks, not during one.
        driver.forget(self)

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
            latch = self._latch
            if latch is None:
                # A lock held until the run is final: cheaper than a threading.Event, and
                # each waiter that gets it lets the next one through.
                latch = threading.Lock()
                latch.acquire()  # held before others can see it (an interrupt may come between)
                self._latch = latch
        if not latch.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            return False
        latch.release()
        return True

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> T:
        final = self._final
        if final is not None:  # most calls, without wait's frame
            return final.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]
        if not self.wait(timeout):
            raise TimeoutError(
                f"Task run {self.task_run.name!r} did not finish within {timeout} seconds."
            )
        assert self._final is not None
        return self._final.result(raise_on_failure=raise_on_failure)  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Callable[[TaskRunFuture[T]], object]) -> None:
        with _settle_lock:
            if self._final is None:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        _call_back(fn, self)


def _call_back(fn: Callable[[Any], object], future: TaskRunFuture[Any]) -> None:
    """Call a done-callback; one that raises is logged and does not stop the ones after it."""
    try:
        fn(future)
    except Exception:
        logging.getLogger("taskloom.futures").exception(
            "A done-callback of task run %r raised; the callbacks after it still run.",
            future.task_run.name,
        )
