"""What the driver hands a runner for one task run: a `TaskRunCall` and its `RunDefaults`.

Plain data, above the tasks (a call holds its task) and below the engine that runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

if TYPE_CHECKING:
    from ._events import TaskRunEvent
    from .context import FlowRun, TaskRun
    from .tasks import Task

__all__ = ["RunDefaults", "TaskRunCall"]


class RunDefaults(NamedTuple):
    """Settings of the flow run that a task run needs where it runs (from the flow's process)."""

    persist_result: bool = False
    result_storage: str = "local-file"
    result_path: str | None = ".taskloom/storage"
    result_serializer: str = "pickle"
    log_prints: bool | None = None  # the flow's setting: None when it gives none
    #: ``[storages.NAME]`` options by storage name, checked and typed in the flow's process.
    storage_options: Mapping[str, Mapping[str, Any]] | None = None
    #: The runner enforces ``timeout_seconds`` itself (`Capability.ENFORCES_TIMEOUTS`): the
    #: engine starts no timer of its own.
    runner_timeouts: bool = False
    #: ``(tasks.default_retries, tasks.default_retry_delay_seconds)`` when either is set: for
    #: the runs a task run submits on its worker (see `taskloom._nested`).
    retry_defaults: tuple[int, float] | None = None


class _Upstream:
    """Placeholder in a call's parameters for the result of the upstream run at ``index``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Upstream, (self.index,))


@attrs.define(eq=False)
class TaskRunCall:
    """Everything a worker needs to run one task run, and nothing that only the driver has.

    ``upstream`` holds the driver's futures this run waits for, in the order a runner passes
    their outcomes to `run_task_call`; ``emit`` delivers events live when the call runs in the
    flow's process. Neither is pickled: a call that crosses a process boundary records its
    events and returns them in its `TaskRunOutcome`. ``allow_failure[i]`` says the run takes
    upstream ``i`` whatever its state; ``retries_used`` counts retries already spent (a crash
    retried by the driver).
    """

    task_run: TaskRun
    flow_run: FlowRun
    task: Task[..., Any]
    parameters: dict[str, Any]
    upstream: tuple[Any, ...] = ()
    upstream_names: tuple[str, ...] = ()
    log_level: int = logging.INFO
    emit: Callable[[TaskRunEvent], None] | None = None
    allow_failure: tuple[bool, ...] = ()
    defaults: RunDefaults = RunDefaults()  # noqa: RUF009 - an immutable named tuple
    retries_used: int = 0

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "upstream", ())
        object.__setattr__(self, "emit", None)


_PICKLED = (
    "task_run", "flow_run", "task", "parameters", "upstream_names", "log_level",
    "allow_failure", "defaults", "retries_used",
)
