"""What runs on a Ray worker: the engine's `run_task_call`, and prints turned into run logs.

Ray resolves the upstream ``ObjectRef`` arguments to their `TaskRunOutcome` on the worker
before the call, so results move from worker to worker without passing through the flow's
process. The call's states and log records come back inside the returned outcome, and the
driver replays them in order.

Ray forwards a worker's stdout to the driver as ``(print_values pid=4242) AAAA``. With
``capture_prints`` (the runner's default), a ``print()`` to stdout made inside a task run
becomes an INFO line of that run instead, shown in the flow's console in taskloom's format
with the run's name, in order with the run's other logs. Prints outside a task run (another
thread, import time) are left to Ray.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

from taskloom import get_run_logger, get_task_run
from taskloom.engine import TaskRunCall, TaskRunOutcome, run_task_call

__all__ = ["run_call", "run_call_capturing_prints"]

_builtin_print = builtins.print


def _print_as_log(
    *values: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    if (file is None or file is sys.stdout) and get_task_run() is not None:
        get_run_logger().info((" " if sep is None else sep).join(map(str, values)))
        return
    _builtin_print(*values, sep=sep, end=end, file=file, flush=flush)


def run_call(call: TaskRunCall, *upstream: Any) -> TaskRunOutcome:
    """Run one task run on this worker; ``upstream`` are the outcomes Ray resolved."""
    return run_task_call(call, *upstream)


def run_call_capturing_prints(call: TaskRunCall, *upstream: Any) -> TaskRunOutcome:
    """`run_call`, with ``print()`` inside task runs logged as the run's INFO lines."""
    if builtins.print is not _print_as_log:
        builtins.print = _print_as_log  # this process is a Ray worker of the flow's job
    return run_task_call(call, *upstream)
