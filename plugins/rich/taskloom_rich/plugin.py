"""Entry point of taskloom-rich: the ``progress.enabled`` setting and the flow-run hooks.

Nothing here imports rich: the display module is imported when a display starts, and the
per-task hooks (``_counter``) are registered only while one is live.
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl
from taskloom.config import Setting, Settings
from taskloom.context import FlowRun
from taskloom.states import State

from . import _session
from ._switch import SETTING

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_add_settings() -> list[Setting]:
    # `object`: the value is a bool or the string "auto"; `progress_wanted` checks it.
    return [
        Setting(
            SETTING,
            object,
            "auto",
            'Live progress bars on standard error while a flow runs: true, false or "auto" (when it is a terminal).',
        )
    ]


@hookimpl
def taskloom_flow_run_started(flow_run: FlowRun, task_runner: Any, settings: Settings) -> None:
    try:
        # A subflow (called in a flow or inside a task) draws into its parent's display.
        if flow_run.parent_flow_run_id is not None or flow_run.parent_task_run_id is not None:
            return
        _session.begin(flow_run.id, settings)
    except Exception as exc:
        _session.report(exc)


@hookimpl
def taskloom_flow_run_finished(flow_run: FlowRun, state: State) -> None:
    try:
        _session.end(flow_run.id)
    except Exception as exc:
        _session.report(exc)
