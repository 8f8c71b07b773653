"""The per-task hooks, registered only while a display is live.

The core makes and hands over every state change of every task run once any plugin observes
task runs, which costs a flow run more than the counting itself. Registering these hooks only
while a display is live keeps a run without one (a pipe, a file, CI) at the cost of a run
without this plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskloom import hookimpl
from taskloom.context import TaskRun
from taskloom.states import State, StateType

from . import _session

_FAILED = frozenset({StateType.FAILED, StateType.CRASHED})


@hookimpl
def taskloom_task_run_created(task_run: TaskRun, parameters: Mapping[str, Any]) -> None:
    board = _session.board
    if board is not None:
        try:
            board.created(task_run.task_name, task_run.id)
        except Exception as exc:
            _session.report(exc)


@hookimpl
def taskloom_task_run_state_changed(task_run: TaskRun, old: State | None, new: State) -> None:
    if new.is_terminal():
        board = _session.board
        if board is not None:
            try:
                # NotReady counts as failed: the run never ran, and the flow fails for it.
                board.settled(task_run.id, new.type in _FAILED or not new.is_final())
            except Exception as exc:
                _session.report(exc)
