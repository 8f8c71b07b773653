"""taskloom-history: every flow run and task run in a SQLite file, and commands to read it.

Recording happens through taskloom's lifecycle hooks in the flow's process; reading is
`taskloom runs`, `taskloom runs show RUN` and `taskloom report RUN -o run.html`, or this
module's functions on a connection from `connect`.
"""

from __future__ import annotations

from .report import render_report
from .store import (
    SCHEMA_VERSION,
    FlowRunRecord,
    HistoryError,
    StateRecord,
    TaskRunRecord,
    connect,
    find_flow_run,
    recent_flow_runs,
    subflow_runs,
    task_runs,
)

__all__ = [
    "SCHEMA_VERSION",
    "FlowRunRecord",
    "HistoryError",
    "StateRecord",
    "TaskRunRecord",
    "connect",
    "find_flow_run",
    "recent_flow_runs",
    "render_report",
    "subflow_runs",
    "task_runs",
]
