"""The per-task-run hooks, registered only once a flow run in this process records spans.

Every hook implementation costs each task run a pluggy call, so a process with no tracer
provider never registers these: there, taskloom-otel costs two calls per flow run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from taskloom import hookimpl

from .plugin import _report, _State

if TYPE_CHECKING:
    from taskloom.context import TaskRun
    from taskloom.states import State

NAME = "otel-task-runs"


@hookimpl
def taskloom_task_run_state_changed(task_run: TaskRun, old: State | None, new: State) -> None:
    tracker = _State.tracker
    if tracker is None:
        return
    try:
        tracker.state_changed(task_run, old, new)
    except Exception as exc:
        _report("taskloom_task_run_state_changed", exc)


@hookimpl(wrapper=True)
def taskloom_task_run_execute(task_run: TaskRun, call: Callable[[], Any]) -> Generator[None, Any, Any]:
    # The task run's span is current while its function runs, so spans the function makes
    # (an instrumented HTTP client, the user's own) nest under it. Only where the span lives:
    # in the flow's process; elsewhere the lookup misses and this is a pass-through.
    tracker = _State.tracker
    token = None
    if tracker is not None:
        try:
            token = tracker.enter_task(task_run)
        except Exception as exc:
            _report("taskloom_task_run_execute", exc)
    if token is None or tracker is None:
        return (yield)
    try:
        return (yield)
    finally:
        try:
            tracker.leave_task(token)
        except Exception as exc:
            _report("taskloom_task_run_execute", exc)
