"""What the history does on the flow's hot path: the task runs it is recording, and the rows
of those that ended.

The observer hooks below fire several times per task run, in the flow's threads, so each does
one small thing. A created run becomes one entry of `open_runs`; its Running state is stored
in that entry; its final state takes the entry out and turns it into the run's finished row, a
flat tuple of strings and numbers appended to its writer's ``rows``. The writer thread
(`taskloom_history._writer`) takes the rows and writes them.
"""

from __future__ import annotations

import reprlib
import time
from typing import Any

from taskloom import hookimpl
from taskloom.context import TaskRun
from taskloom.states import State, StateType

__all__ = [
    "CREATED",
    "EARLIER",
    "PARAMETERS",
    "RUNNING",
    "TASK_RUN",
    "WRITING",
    "make_row",
    "open_runs",
    "parameters_text",
    "taskloom_task_run_created",
    "taskloom_task_run_state_changed",
    "writing",
]

#: Flow run -> (the writer of its history file, the run's id as text), keyed by the identity
#: of the id object, which the run's task runs and subflow runs share (a UUID hashes through
#: Python code). Kept by the flow run hooks in `taskloom_history.plugin`.
writing: dict[int, tuple[Any, str]] = {}

#: The task runs being recorded that have not ended, of every flow run, keyed by their id's
#: 128-bit int (it hashes in C; a `TaskRun` hashes its UUID through Python code). Each is one
#: list, indexed by the names below, so that each hook sets, reads or takes out one dict entry:
#: the entry is made when the run is created, given the run's Running state, and taken out
#: whole when the run ends. The writer reads it too, for runs to show while they run and for
#: those a flow run left without a final state.
open_runs: dict[int, list[Any]] = {}
#: The fields of an `open_runs` entry: the run's `writing` pair; the `TaskRun`; its parameters
#: as given; when it was created (``time.time()``); its latest Running state (what it shows
#: until it ends), or None; for a run that was retried, the states before its current
#: attempt, else None.
WRITING, TASK_RUN, PARAMETERS, CREATED, RUNNING, EARLIER = range(6)

#: The values of the final state types: with NotReady, the states a run ends in
#: (`State.is_terminal`). By value: a frozenset of strings hashes in C, of Enum members
#: through a Python ``__hash__``.
_FINAL_TYPES = frozenset(t.value for t in StateType if State(t, "x").is_final())
_RUNNING = StateType.RUNNING


@hookimpl
def taskloom_task_run_created(task_run: TaskRun, parameters: Any) -> None:
    found = writing.get(id(task_run.flow_run_id))
    if found is not None:
        open_runs[task_run.id.int] = [found, task_run, parameters, time.time(), None, None]


@hookimpl
def taskloom_task_run_state_changed(task_run: TaskRun, old: State | None, new: State) -> None:
    if old is None:
        return  # the Pending a run is created in: its creation says as much
    key = task_run.id.int
    if new.type is _RUNNING:
        run = open_runs.get(key)
        if run is not None:
            run[RUNNING] = new
        return
    value = new.type._value_
    if value not in _FINAL_TYPES and new.name != "NotReady":  # not `is_terminal()`: a call less
        run = open_runs.get(key)
        if run is not None:
            # A retry: the attempt that ended and what came after it are kept for the row.
            earlier = run[EARLIER]
            if earlier is None:
                earlier = run[EARLIER] = []
            if old.type is _RUNNING:
                earlier.append(old)
                run[RUNNING] = None  # that attempt is over: shown now from `earlier`
            earlier.append(new)
        return
    run = open_runs.pop(key, None)
    if run is None:
        return  # not recorded (created before history started, or history is off)
    (writer, text), _, parameters, created, _, earlier = run
    if earlier is None and old.type is _RUNNING:
        # The common case, Running and then final, without make_row's walk over the states.
        # The row is a tuple of strings and numbers, which the garbage collector stops
        # tracking the first time it sees it: every object a task run leaves alive brings
        # the collector's next pass closer, and a full pass walks everything the flow holds.
        row = (
            text, key, task_run.name, task_run.task_name,
            ",".join(sorted(task_run.tags)) if task_run.tags else None,
            parameters_text(parameters), created, old.timestamp, new.timestamp,
            value, new.name, new.message, new.traceback, old.worker, 1, None,
        )
    else:
        states = earlier or []
        if old.type is _RUNNING:
            states.append(old)
        states.append(new)
        row = make_row(text, task_run, parameters, created, states, ended=True)
    writer.rows.append(row)


def make_row(
    text: str, task_run: TaskRun, parameters: Any, created: float, states: list[State], ended: bool
) -> tuple[Any, ...]:
    """A task run in `TASK_RUN_FIELDS` order, from its states after the first Pending;
    ``ended`` if the last of them is its final state."""
    start = end = worker = traceback = None
    attempts = 0
    for state in states:
        if state.type is _RUNNING:
            attempts += 1
            worker = state.worker
            if start is None:
                start = state.timestamp
    if states:
        last = states[-1]
        state_type, state_name, message = last.type._value_, last.name, last.message
        if ended:
            end, traceback = last.timestamp, last.traceback
    else:
        state_type, state_name, message = "PENDING", "Pending", None
    return (
        text, task_run.id.int, task_run.name, task_run.task_name,
        ",".join(sorted(task_run.tags)) if task_run.tags else None,
        parameters_text(parameters), created, start, end,
        state_type, state_name, message, traceback, worker, attempts,
        tuple((s.type._value_, s.name, s.timestamp, s.message, s.worker) for s in states),
    )


class _ParameterRepr(reprlib.Repr):
    """Short reprs of parameters; a future shows the run it stands for, not its live state."""

    def __init__(self) -> None:
        super().__init__()  # keyword options arrived only in Python 3.12
        self.maxlevel, self.maxstring, self.maxother, self.maxlist, self.maxdict = 3, 120, 120, 10, 10

    def repr_instance(self, obj: Any, level: int) -> str:
        task_run = getattr(obj, "task_run", None)
        if isinstance(task_run, TaskRun):
            return f"<future of {task_run.name}>"
        try:
            return super().repr_instance(obj, level)
        except Exception:
            return f"<{type(obj).__name__} object>"


_repr = _ParameterRepr().repr
_ATOMIC = frozenset({int, float, bool, type(None)})


def parameters_text(parameters: Any) -> str | None:
    """The parameters as ``name=repr, ...`` with each repr shortened."""
    if not parameters:
        return None
    if len(parameters) == 1:  # the common case, without the loop
        [name] = parameters
        value = parameters[name]
        kind = type(value)
        if kind in _ATOMIC or (kind is str and len(value) <= 120):
            return f"{name}={value!r}"
    try:
        parts = []
        for name, value in dict(parameters).items():
            kind = type(value)
            if kind in _ATOMIC or (kind is str and len(value) <= 120):
                parts.append(f"{name}={value!r}")  # the common case, without reprlib's walk
            else:
                parts.append(f"{name}={_repr(value)}")
        return ", ".join(parts)
    except Exception as exc:  # a mapping that changed while it was read
        return f"<unreadable: {type(exc).__name__}: {exc}>"
