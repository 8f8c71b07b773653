"""taskloom: run Python functions as tasks inside flows, on a runner chosen by name.

    from taskloom import flow, task

    @task
    def double(x):
        return 2 * x

    @flow(task_runner="concurrent")
    def my_flow():
        futures = double.map([1, 2, 3])
        return [f.result() for f in futures]

``flow``, ``task`` and their classes load at ``import taskloom``; the rest of the public
names (states, futures, the run logger, ``hookimpl``) load on first use, so that importing
taskloom stays cheap for scripts, CLIs and workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _current
from .flows import Flow, flow
from .tasks import Task, allow_failure, exponential_backoff, quote, tags, task, unmapped

if TYPE_CHECKING:
    from .caching import INPUTS, NONE, TASK_SOURCE, task_input_hash
    from .context import FlowRun, TaskRun, get_flow_run, get_task_run
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

__version__ = "0.1.0"

_LAZY = {
    **dict.fromkeys(("FlowRun", "TaskRun", "get_flow_run", "get_task_run"), "context"),
    **dict.fromkeys(("TaskFuture", "as_completed", "wait"), "futures"),
    "get_run_logger": "logging",
    **dict.fromkeys(("INPUTS", "TASK_SOURCE", "NONE", "task_input_hash"), "caching"),
    "hookimpl": "plugins",
    **dict.fromkeys(("AwaitingRetry", "Cached", "Cancelled", "Completed", "Crashed"), "states"),
    **dict.fromkeys(("Failed", "Pending", "Retrying", "Running", "State"), "states"),
    **dict.fromkeys(("StateType", "TimedOut"), "states"),
}


# The composition root: the two calls a lower layer makes into a higher one (see
# `taskloom._current`), each importing its module at first use.
def _plugin_registry() -> Any:
    from . import plugins

    return plugins


def _nested_driver() -> Any:
    from ._nested import nested_driver

    return nested_driver()


_current.plugin_registry = _plugin_registry
_current.nested_driver = _nested_driver


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "INPUTS",
    "NONE",
    "TASK_SOURCE",
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
    "allow_failure",
    "as_completed",
    "exponential_backoff",
    "flow",
    "get_flow_run",
    "get_run_logger",
    "get_task_run",
    "hookimpl",
    "quote",
    "tags",
    "task",
    "task_input_hash",
    "unmapped",
    "wait",
]
