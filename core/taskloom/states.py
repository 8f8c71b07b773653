"""States: what a task run or flow run is doing, or how it ended.

A `State` is a small frozen value. Final states of a task run carry its result (``data``)
or the exception that ended it, with the traceback formatted where it was raised, so the
state means the same after it has crossed a process boundary.
"""

from __future__ import annotations

import enum
import time
from typing import Any, Protocol

import attrs

__all__ = [
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Completed",
    "Crashed",
    "CrashedRun",
    "Failed",
    "FailedRun",
    "Pending",
    "Retrying",
    "Running",
    "State",
    "StateType",
    "TimedOut",
    "UpstreamTaskError",
]


class StateType(enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self._value_ in _FINAL


# By value: an Enum member hashes in Python, its value (a str) in C, and every run asks.
_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class UpstreamTaskError(Exception):
    """Raised by ``result()`` of a task run that never ran because an input did not complete."""


class CrashedRun(Exception):
    """Raised by ``result()`` of a run whose infrastructure failed (a worker died, a cluster left)."""


class FailedRun(RuntimeError):
    """Raised by ``result()`` of a failed run whose state carries no exception (``Failed("...")``)."""


class CancelledRun(Exception):
    """Raised by ``result()`` of a run that was cancelled before it finished."""


class _NoData:
    """The `data` of a state that has none; one per process, even after a pickle round trip."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_NO_DATA"

    def __repr__(self) -> str:
        return "<no data>"


_NO_DATA: Any = _NoData()


@attrs.frozen(repr=False, eq=False, weakref_slot=False)
class State:
    """Where a run is, or how it ended.

    ``type`` is the coarse kind (`StateType`); ``name`` the specific one (``"Cached"`` is a
    ``COMPLETED`` type, ``"TimedOut"`` a ``FAILED`` one). ``data`` is the result of a completed
    run; ``exception`` and ``traceback`` describe a failed or crashed one. ``worker`` says where
    a task run entered a ``RUNNING`` state, as ``host/pid/thread`` (None for other states).
    ``run_id`` is the id of the task run or flow run whose final state this is, set when the
    run settles; it is None for a state made by hand (as Prefect's ``state_details`` tell a
    run's state from one a flow returns).
    """

    type: StateType
    name: str
    message: str | None = None
    timestamp: float = attrs.field(factory=time.time)
    data: Any = _NO_DATA
    exception: BaseException | None = None
    traceback: str | None = None
    worker: str | None = None
    run_id: Any = None

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_final(self) -> bool:
        """Whether the state is of a final type: completed, failed, crashed or cancelled."""
        return self.type._value_ in _FINAL

    def is_terminal(self) -> bool:
        """Whether a task run stays in this state: a final one, or ``NotReady``.

        ``NotReady`` is a ``PENDING`` state (as in Prefect), but a run that gets it never
        runs: one of its inputs did not complete. Observers use this to know a run's last
        state; `is_final` keeps Prefect's meaning.
        """
        return self.type._value_ in _FINAL or self.name == "NotReady"

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a run that did not complete, raise why (or return it).

        A failed run re-raises the task's own exception, with the traceback from where it ran
        attached as a note. With ``raise_on_failure=False`` the state's data is returned if it
        has any (the states a failed flow returned), else the exception, as in Prefect.
        """
        data = self.data
        if self.type is StateType.COMPLETED or (not raise_on_failure and data is not _NO_DATA):
            loader = getattr(data, "__taskloom_load__", None)
            return loader() if loader is not None else (None if data is _NO_DATA else data)
        exc = self._exception_to_raise()
        if raise_on_failure:
            raise exc
        return exc

    def _exception_to_raise(self) -> BaseException:
        exc = self.exception
        if exc is None:
            kind = {
                StateType.CRASHED: CrashedRun,
                StateType.CANCELLED: CancelledRun,
                StateType.PENDING: UpstreamTaskError,
            }.get(self.type, FailedRun)
            return kind(self.message or f"Run ended in state {self!r} without a result.")
        # Only an exception that crossed from a worker lost its frames; give it the text.
        crossed = exc.__traceback__ is None
        if self.traceback and crossed and not getattr(exc, "__taskloom_note__", False):
            try:
                exc.add_note("\nTraceback where the task ran:\n" + self.traceback.rstrip())
                exc.__taskloom_note__ = True  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
        return exc

    def __repr__(self) -> str:
        # Log lines show only the first line of a message; the whole text stays in .message.
        if self.message:
            return f"{self.name}({self.message.splitlines()[0]!r})"
        return f"{self.name}()"

    __str__ = __repr__


def _fast_init() -> None:
    """Give `State` an ``__init__`` that sets its slots through their descriptors.

    attrs' ``__init__`` for a frozen slotted class calls ``object.__setattr__`` once per field;
    each task run makes two or three states, and setting the slots directly is faster. Same
    signature and defaults (``timestamp=None`` is now), and instances stay frozen: only this
    function writes the slots.
    """
    slots = State.__dict__
    set_type, set_name, set_message, set_timestamp, set_data, set_exception, set_traceback, set_worker, set_run_id = (
        slots[field.name].__set__ for field in attrs.fields(State)
    )
    now = time.time

    def __init__(  # noqa: N807 - it becomes State.__init__
        self: State,
        type: StateType,
        name: str,
        message: str | None = None,
        timestamp: float | None = None,
        data: Any = _NO_DATA,
        exception: BaseException | None = None,
        traceback: str | None = None,
        worker: str | None = None,
        run_id: Any = None,
    ) -> None:
        set_type(self, type)
        set_name(self, name)
        set_message(self, message)
        set_timestamp(self, now() if timestamp is None else timestamp)
        set_data(self, data)
        set_exception(self, exception)
        set_traceback(self, traceback)
        set_worker(self, worker)
        set_run_id(self, run_id)

    __init__.__doc__ = State.__init__.__doc__
    State.__init__ = __init__  # type: ignore[method-assign]


_fast_init()


class _StateDraft:
    __slots__ = tuple(field.name for field in attrs.fields(State))


def _new_state(
    type: StateType,
    name: str,
    message: str | None = None,
    data: Any = _NO_DATA,
    worker: str | None = None,
) -> State:
    """``State(type, name, message, data=data, worker=worker)``, made now, for the engine and
    the driver, which make two or three states per task run.

    The fields are set on a plain object of the same slots, which then becomes a `State`:
    about half the time of even `_fast_init`'s setters, since a frozen
    class refuses ``self.x = ...``. Python allows the class change only between classes
    without a ``__weakref__`` slot, hence `State` has none.
    """
    draft: Any = _StateDraft()
    draft.type = type
    draft.name = name
    draft.message = message
    draft.timestamp = _now()
    draft.data = data
    draft.exception = None
    draft.traceback = None
    draft.worker = worker
    draft.run_id = None
    draft.__class__ = State
    return draft  # type: ignore[no-any-return]


_now = time.time


#: ``_mark_run(state, run_id)`` records that ``state`` is the final state of run ``run_id``
#: (the driver, as a run settles): the slot's own setter, one C call per task run.
_mark_run: Any = State.__dict__["run_id"].__set__


class _StateConstructor(Protocol):
    def __call__(
        self, message: str | None = None, *, name: str = ..., **fields: Any
    ) -> State: ...


def _make(type_: StateType, name: str) -> _StateConstructor:
    def constructor(message: str | None = None, *, name: str = name, **fields: Any) -> State:
        return State(type_, name, message, **fields)

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = f"A `State` of type {type_.value} named {name!r}."
    return constructor  # type: ignore[return-value]


Pending = _make(StateType.PENDING, "Pending")
Running = _make(StateType.RUNNING, "Running")
Completed = _make(StateType.COMPLETED, "Completed")
Cached = _make(StateType.COMPLETED, "Cached")
Failed = _make(StateType.FAILED, "Failed")
TimedOut = _make(StateType.FAILED, "TimedOut")
Crashed = _make(StateType.CRASHED, "Crashed")
Cancelled = _make(StateType.CANCELLED, "Cancelled")
AwaitingRetry = _make(StateType.PENDING, "AwaitingRetry")
Retrying = _make(StateType.RUNNING, "Retrying")
