"""The current flow run and task run, as context variables.

`FlowRun` and `TaskRun` are the identities of runs: frozen, small and picklable, so the
same `TaskRun` is seen by hooks in the flow's process and by the engine on a worker.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from .flows import _FlowRunDriver
    from .engine import _EventRecorder

__all__ = ["FlowRun", "TaskRun", "get_flow_run", "get_task_run"]


@attrs.frozen(eq=False)
class FlowRun:
    """One run of a flow: its id, its readable name and the parameters it was called with."""

    id: uuid.UUID
    name: str
    flow_name: str
    parameters: dict[str, Any] = attrs.field(factory=dict, repr=False)
    parent_task_run_id: uuid.UUID | None = None


@attrs.frozen(eq=False)
class TaskRun:
    """One run of a task inside a flow run, named ``{task}-{key}-{n}`` as Prefect names it."""

    id: uuid.UUID
    name: str
    task_name: str
    task_key: str
    flow_run_id: uuid.UUID | None
    flow_run_name: str | None
    tags: frozenset[str] = frozenset()
    runner_options: dict[str, Any] = attrs.field(factory=dict, repr=False)


# Set in the flow's process while a flow body runs.
_flow_run_driver: contextvars.ContextVar[_FlowRunDriver | None] = contextvars.ContextVar(
    "taskloom_flow_run", default=None
)
# Set wherever a task run executes: a thread, a process, a Dask or Ray worker.
_task_run_recorder: contextvars.ContextVar[_EventRecorder | None] = contextvars.ContextVar(
    "taskloom_task_run", default=None
)


def get_flow_run() -> FlowRun | None:
    """The flow run whose body is running in this context, or None."""
    driver = _flow_run_driver.get()
    if driver is not None:
        return driver.flow_run
    recorder = _task_run_recorder.get()
    if recorder is not None:
        return recorder.flow_run
    return None


def get_task_run() -> TaskRun | None:
    """The task run executing in this context (on whichever worker), or None."""
    recorder = _task_run_recorder.get()
    return recorder.task_run if recorder is not None else None
