"""The current flow run and task run, as context variables.

`FlowRun` and `TaskRun` are the identities of runs: frozen, small and picklable, so the
same `TaskRun` is seen by hooks in the flow's process and by the engine on a worker.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs

from ._current import _flow_run_driver, _task_run_recorder

__all__ = ["FlowRun", "ParameterLeftBehind", "TaskRun", "get_flow_run", "get_task_run"]


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


@attrs.frozen(eq=False, weakref_slot=False)
class TaskRun:
    """One run of a task inside a flow run, named ``{task}-{key}-{n}`` as Prefect names it.

    Inside the task, `get_task_run` also says which attempt this is, as Prefect's run context
    does: ``run_count`` (1 on the first attempt, 2 on the first retry), ``state_name``
    (``"Running"`` or ``"Retrying"``) and ``start_time`` (when the first attempt started, UTC).
    Elsewhere (in hooks, in the flow) these are 0 and None. Two `TaskRun` values with the same
    ``id`` are the same run and compare equal.
    """

    id: uuid.UUID
    name: str
    task_name: str
    task_key: str
    flow_run_id: uuid.UUID | None
    flow_run_name: str | None
    tags: frozenset[str] = frozenset()
    runner_options: dict[str, Any] = attrs.field(factory=dict, repr=False)
    run_count: int = attrs.field(default=0, repr=False)
    state_name: str | None = attrs.field(default=None, repr=False)
    start_time: datetime | None = attrs.field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, TaskRun) and other.id == self.id)

    def __hash__(self) -> int:
        return hash(self.id.int)  # what hash(self.id) gives, without a call into Python


class _TaskRunDraft:
    __slots__ = tuple(field.name for field in attrs.fields(TaskRun))


def _new_task_run(
    id: uuid.UUID,
    name: str,
    task_name: str,
    task_key: str,
    flow_run_id: uuid.UUID | None,
    flow_run_name: str | None,
    tags: frozenset[str],
    runner_options: dict[str, Any],
) -> TaskRun:
    """``TaskRun(...)`` for the driver, which makes one per task run: the fields set on a
    plain object of the same slots, which then becomes a `TaskRun` (a frozen attrs class
    sets each field through ``object.__setattr__``: a quarter of the time). The same trick
    as `State`'s, hence no ``__weakref__`` slot."""
    draft: Any = _TaskRunDraft()
    draft.id = id
    draft.name = name
    draft.task_name = task_name
    draft.task_key = task_key
    draft.flow_run_id = flow_run_id
    draft.flow_run_name = flow_run_name
    draft.tags = tags
    draft.runner_options = runner_options
    draft.run_count = 0
    draft.state_name = None
    draft.start_time = None
    draft.__class__ = TaskRun
    return draft  # type: ignore[no-any-return]


@attrs.frozen
class ParameterLeftBehind:
    """Stands in, on a worker, for a flow parameter that stayed in the flow's process."""

    name: str
    type_name: str
    reason: str

    def __repr__(self) -> str:
        return (
            f"<flow parameter {self.name!r} ({self.type_name}) stayed in the flow's process: "
            f"{self.reason}; pass it to the task as an argument>"
        )


def get_flow_run() -> FlowRun | None:
    """The flow run whose body is running in this context, or None.

    Inside a task on any runner this is the task's flow run, with its parameters; on a runner
    whose workers are other processes, a parameter too large to send along with every call
    (over 64 KiB pickled) or one that cannot be pickled is a `ParameterLeftBehind` there.
    """
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
    return recorder.current_task_run() if recorder is not None else None
