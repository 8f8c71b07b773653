"""The current flow run and task run, as context variables.

`FlowRun` and `TaskRun` are the identities of runs: frozen, small and picklable, so the
same `TaskRun` is seen by hooks in the flow's process and by the engine on a worker.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from ._ctx import _flow_run_driver, _task_run_recorder

__all__ = ["FlowRun", "TaskRun", "get_flow_run", "get_task_run"]


@attrs.frozen(eq=False)
class FlowRun:
    """One run of a flow: its id, its readable name and the parameters it was called with.

    A subflow run names the flow run it was called in (``parent_flow_run_id``) and, when it
    was called from inside a task, that task run (``parent_task_run_id``).
    """

    id: uuid.UUID
    name: str
    flow_name: str
    parameters: dict[str, Any] = attrs.field(factory=dict, repr=False)
    parent_task_run_id: uuid.UUID | None = None
    parent_flow_run_id: uuid.UUID | None = None


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


def get_flow_run() -> FlowRun | None:
    """The flow run whose body is running in this context, or None."""
    driver = _flow_run_driver.get()
    if driver is not None:
        return driver.flow_run  # type: ignore[no-any-return]
    recorder = _task_run_recorder.get()
    if recorder is not None:
        return recorder.flow_run  # type: ignore[no-any-return]
    return None


def get_task_run() -> TaskRun | None:
    """The task run executing in this context (on whichever worker), or None."""
    recorder = _task_run_recorder.get()
    return recorder.task_run if recorder is not None else None
