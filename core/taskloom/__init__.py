"""taskloom: run Python functions as tasks inside flows, on a runner chosen by name.

    from taskloom import flow, task

    @task
    def double(x):
        return 2 * x

    @flow(task_runner="concurrent")
    def my_flow():
        futures = double.map([1, 2, 3])
        return [f.result() for f in futures]
"""

from __future__ import annotations

from .context import FlowRun, TaskRun, get_flow_run, get_task_run
from .flows import Flow, flow
from .futures import TaskFuture, as_completed, wait
from .logging import get_run_logger
from .plugins import hookimpl
from .states import (
    AwaitingRetry,
    Cached,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateType,
    TimedOut,
)
from .tasks import Task, task, unmapped

__version__ = "0.1.0"

__all__ = [
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Completed",
    "Crashed",
    "Failed",
    "Flow",
    "FlowRun",
    "Pending",
    "Retrying",
    "Running",
    "State",
    "StateType",
    "Task",
    "TaskFuture",
    "TaskRun",
    "TimedOut",
    "__version__",
    "as_completed",
    "flow",
    "get_flow_run",
    "get_run_logger",
    "get_task_run",
    "hookimpl",
    "task",
    "unmapped",
    "wait",
]
