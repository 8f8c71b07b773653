"""In the flow's process: the runs that task runs submitted on their workers.

A task run that submits tasks where the flow's driver is not (see `taskloom._nested`) sends
its children's creation and state changes in its own event stream, each event naming the
child (``TaskRunEvent.run``); their log lines come as plain records. `ChildRuns` gives them
to the hooks and to the flow run's final state as the driver does for the runs it submits,
and ends the children that a parent leaves unfinished (it crashed or timed out first).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .states import Cancelled, Crashed, State, StateType

if TYPE_CHECKING:
    from collections.abc import Callable
    from threading import RLock

    from ._events import TaskRunEvent
    from .context import FlowRun, TaskRun
    from .futures import TaskRunFuture

__all__ = ["ChildRuns"]


class _Driver(Protocol):
    """The flow run's driver (`taskloom._driver`) as its child runs use it: the driver is the
    layer above, which makes a `ChildRuns`, so this module does not import it."""

    flow_run: FlowRun
    lock: RLock
    created_hook: Callable[..., Any] | None
    state_hook: Callable[..., Any] | None

    def count(self, name: str, state: State) -> None: ...
    def log_task(self, task_run: TaskRun, level: int, message: str) -> None: ...


class ChildRuns:
    """The child runs of one flow run not final yet, by id: [run, last state, parent future]."""

    def __init__(self, driver: _Driver) -> None:
        self._driver = driver
        #: Read by the driver as each run ends: a dict's truth costs no Python call.
        self.open: dict[uuid.UUID, list[Any]] = {}

    def on_event(self, parent: TaskRunFuture[Any], event: TaskRunEvent) -> None:
        """A child's creation or state change, from its parent's stream (in its order)."""
        driver, run = self._driver, event.run
        assert run is not None
        if event.parameters is not None:
            # This process's flow run id object: observers key their runs by it.
            flow_run = driver.flow_run
            run = attrs.evolve(run, flow_run_id=flow_run.id, flow_run_name=flow_run.name)
            with driver.lock:
                self.open[run.id] = [run, None, parent]
            if driver.created_hook is not None:
                driver.created_hook(run, event.parameters)
            return
        child = self.open.get(run.id)
        new = event.new
        if child is None or new is None:
            return
        old, child[1] = child[1], new
        if driver.state_hook is not None:
            driver.state_hook(child[0], old, new)
        if new.is_terminal():
            with driver.lock:
                del self.open[run.id]
                driver.count(child[0].name, new)

    def end(self, parent: TaskRunFuture[Any]) -> None:
        """End the children of a run that ended (or crashed) before they did: Crashed if
        they were seen running, else Cancelled; what they report later is dropped."""
        driver = self._driver
        with driver.lock:
            left: list[tuple[TaskRun, State | None]] = []
            for key, (run, seen, of) in list(self.open.items()):
                if of is parent:
                    del self.open[key]
                    left.append((run, seen))
        for run, seen in left:
            if seen is not None and seen.type is not StateType.PENDING:
                state: State = Crashed("Task run was cut off: the task run that submitted it ended first.")
            else:
                state = Cancelled("Task run was cancelled: the task run that submitted it ended first.")
            if driver.state_hook is not None:
                driver.state_hook(run, seen, state)
            level = logging.ERROR if state.is_crashed() else logging.INFO
            driver.log_task(run, level, f"Finished in state {state!r}")
            with driver.lock:
                driver.count(run.name, state)
