"""Reading the history file of a test's working directory, as the CLI reads it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from taskloom_history import (
    FlowRunRecord,
    TaskRunRecord,
    connect,
    recent_flow_runs,
    subflow_runs,
    task_runs,
)


class History:
    """The history file of the test's working directory, read the way the CLI reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def connect(self) -> sqlite3.Connection:
        return connect(self.path, create=False)

    def flow_runs(self, subflows: bool = True) -> list[FlowRunRecord]:
        with contextlib.closing(self.connect()) as conn:
            return recent_flow_runs(conn, 1000, subflows=subflows)

    def only_flow_run(self) -> FlowRunRecord:
        [run] = self.flow_runs(subflows=False)
        return run

    def task_runs(self, flow_run: FlowRunRecord, with_subflows: bool = False) -> list[TaskRunRecord]:
        with contextlib.closing(self.connect()) as conn:
            ids = [flow_run.id]
            if with_subflows:
                ids += [s.id for s in subflow_runs(conn, flow_run.id)]
            return task_runs(conn, ids)

    def by_task(self, flow_run: FlowRunRecord) -> dict[str, TaskRunRecord]:
        return {t.name: t for t in self.task_runs(flow_run)}
