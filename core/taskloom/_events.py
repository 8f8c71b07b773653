"""What a worker sends back about a task run: its numbered events, their log records, its outcome.

Plain data, below the futures (which take the events) and the engine (which makes them), so
that both can name them without one importing the other.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .context import TaskRun
    from .states import State

__all__ = ["FLOW_RUN_LOGGER", "TASK_RUN_LOGGER", "TaskRunEvent", "TaskRunOutcome", "run_record"]


class TaskRunEvent(NamedTuple):
    """A state change (``old`` → ``new``) or a log ``record`` of one task run, numbered in order.

    A named tuple, not an attrs class: two or more are made per task run, on the hot path.

    A task run that submits tasks on a worker (see `taskloom._nested`) sends its children's
    creation and state changes in its own stream: ``run`` is then the child run, and
    ``parameters`` (set on the child's first event only) what it was given.
    """

    seq: int
    old: State | None = None
    new: State | None = None
    record: logging.LogRecord | None = None
    run: TaskRun | None = None
    parameters: dict[str, Any] | None = None


class TaskRunOutcome(NamedTuple):
    """What a worker hands back: the final state and the events the driver has not seen yet."""

    state: State
    events: tuple[TaskRunEvent, ...] = ()


TASK_RUN_LOGGER = "taskloom.task_runs"
FLOW_RUN_LOGGER = "taskloom.flow_runs"


def run_record(
    logger_name: str,
    level: int,
    message: str,
    task_run_name: str | None,
    task_run_id: Any,
    flow_run_name: str | None,
    flow_run_id: Any,
    exc_text: str | None = None,
) -> logging.LogRecord:
    """A log record of a run, with its names and ids, its message already formatted.

    Built directly, not through `logging.Logger.log` or `logging.LogRecord`'s constructor:
    no caller lookup and no source path to split, which cost more than the rest of a task
    run's line at INFO, and nothing in it that cannot cross a process boundary.
    """
    record = _new_record(logging.LogRecord)
    fields = _RECORD_FIELDS.copy()
    now = time.time_ns()
    thread = threading.current_thread()
    fields["name"] = logger_name
    fields["msg"] = message
    fields["levelno"] = level
    fields["levelname"] = logging.getLevelName(level)
    fields["created"] = now / 1e9
    fields["msecs"] = now % 1_000_000_000 // 1_000_000 + 0.0
    fields["relativeCreated"] = (now - _LOADED_NS) / 1e6
    fields["thread"] = thread.ident
    fields["threadName"] = thread.name
    fields["process"] = os.getpid()
    fields["exc_text"] = exc_text
    fields["task_run_name"] = task_run_name
    fields["task_run_id"] = None if task_run_id is None else str(task_run_id)
    fields["flow_run_name"] = flow_run_name
    fields["flow_run_id"] = None if flow_run_id is None else str(flow_run_id)
    record.__dict__ = fields
    return record


_new_record = object.__new__
#: What `logging.LogRecord` sets and a run's record leaves empty (no source location).
_RECORD_FIELDS: dict[str, Any] = {
    "args": None, "pathname": "", "filename": "", "module": "", "exc_info": None,
    "stack_info": None, "lineno": 0, "funcName": None, "processName": "MainProcess", "taskName": None,
}
_LOADED_NS = time.time_ns()
