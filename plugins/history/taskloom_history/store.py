"""The history file: its schema, opening it safely, and reading runs back.

One SQLite file in WAL mode: readers (``taskloom runs``) never block the writers, and flows in
several processes each write through their own connection, waiting up to ``timeout`` seconds
for one another. ``PRAGMA user_version`` holds the schema version, so a file written by a newer
taskloom-history is recognised and left alone rather than misread.
"""

from __future__ import annotations

import marshal
import os
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "SCHEMA_VERSION",
    "TASK_RUN_FIELDS",
    "FlowRunRecord",
    "HistoryError",
    "StateRecord",
    "TaskRunRecord",
    "connect",
    "find_flow_run",
    "recent_flow_runs",
    "subflow_runs",
    "task_runs",
]

SCHEMA_VERSION = 1

#: The fields of one task run in a batch, in order. In the file its times (``created``,
#: ``start_time``, ``end_time`` and the states') are seconds since the epoch and ``id`` is
#: the UUID's 128-bit integer; `task_runs` gives the dashed id.
TASK_RUN_FIELDS = (
    "flow_run_id", "id", "name", "task_name", "tags", "parameters", "created", "start_time",
    "end_time", "state_type", "state_name", "message", "traceback", "worker", "attempts", "states",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flow_runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    flow_name TEXT NOT NULL,
    parameters TEXT,
    parent_flow_run_id TEXT,
    parent_task_run_id TEXT,
    task_runner TEXT,
    host TEXT,
    pid INTEGER,
    start_time REAL NOT NULL,
    end_time REAL,
    state_type TEXT NOT NULL,
    state_name TEXT NOT NULL,
    message TEXT,
    traceback TEXT,
    task_run_count INTEGER NOT NULL DEFAULT 0,
    failed_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS flow_runs_by_start ON flow_runs (start_time);
CREATE INDEX IF NOT EXISTS flow_runs_by_parent ON flow_runs (parent_flow_run_id);
-- Task runs are written a batch at a time: one row holds the task runs of one flow run that
-- ended (or were shown while running) in that batch, as a marshal-encoded list of tuples of
-- plain values (a run written again later appears again, newer). One row per batch, encoded
-- by marshal, is what keeps recording within its budget: a row per task run, or JSON, cost
-- more. Read them with taskloom_history.task_runs or `taskloom runs show --json`.
CREATE TABLE IF NOT EXISTS task_run_batches (
    seq INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL,
    written REAL NOT NULL,
    task_runs BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS task_run_batches_by_flow_run ON task_run_batches (flow_run_id);
"""

class HistoryError(Exception):
    """The history file cannot be used; the message is one sentence saying why and what to do."""


def _explain(path: Path, exc: sqlite3.Error, timeout: float) -> HistoryError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return HistoryError(
            f"{path} stayed locked by another program for {timeout:g}s ({text}); "
            "close it or raise history.timeout"
        )
    not_ours = ("no such table", "no such column", "columns but", "malformed", "not a database")
    if not isinstance(exc, sqlite3.OperationalError) or any(part in text for part in not_ours):
        return HistoryError(
            f"{path} is not a usable taskloom history database ({text}); "
            "move it away or set history.path to another file"
        )
    return HistoryError(f"{path} cannot be opened ({text}); check the path and its permissions")


def connect(path: Path, timeout: float = 5.0, create: bool = True) -> sqlite3.Connection:
    """Open the history file at ``path`` (creating it and its schema if ``create``).

    Raises `HistoryError` with one sentence for a file that is locked for longer than
    ``timeout`` seconds, is not a SQLite database, or was written by a newer schema.
    """
    if not create and not path.exists():
        raise HistoryError(
            f"No run history at {path} yet: run a flow with taskloom-history installed "
            "(history.enabled = true), or point --db / history.path at another file"
        )
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except (sqlite3.Error, OSError) as exc:
        raise HistoryError(f"{path} cannot be opened ({exc}); check the path and its permissions") from None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{path} was written by a newer taskloom-history (schema {version}; this one "
                f"reads up to {SCHEMA_VERSION}): upgrade taskloom-history, or set history.path "
                "to another file"
            )
        if create:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if version < SCHEMA_VERSION:
                _create_schema(conn)
            else:
                _check_schema(path, conn)
        elif version == 0:
            raise HistoryError(f"{path} holds no taskloom run history; is it the right file?")
    except HistoryError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise _explain(path, exc, timeout) from None
    return conn


_TABLES = {
    "flow_runs": 17,
    "task_run_batches": 4,
}


def _check_schema(path: Path, conn: sqlite3.Connection) -> None:
    """A file that says it has our schema must have our tables (another program's file
    can carry the same ``user_version``)."""
    for table, columns in _TABLES.items():
        found = len(conn.execute(f"PRAGMA table_info({table})").fetchall())
        if found != columns:
            raise HistoryError(
                f"{path} is not a usable taskloom history database (table {table} has "
                f"{found} columns, not {columns}); move it away or set history.path to another file"
            )


def _create_schema(conn: sqlite3.Connection) -> None:
    # One script in one write transaction; IF NOT EXISTS makes a second process that waited
    # for the lock a no-op. (executescript commits first, so BEGIN goes inside the script.)
    try:
        conn.executescript(
            f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
        )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# -- reading runs back ------------------------------------------------------------------------


@attrs.frozen
class FlowRunRecord:
    """A flow run as the history recorded it."""

    id: str
    name: str
    flow_name: str
    parameters: str | None
    parent_flow_run_id: str | None
    parent_task_run_id: str | None
    task_runner: str | None
    host: str | None
    pid: int | None
    start_time: float
    end_time: float | None
    state_type: str
    state_name: str
    message: str | None
    traceback: str | None
    task_run_count: int = 0
    failed_count: int = 0

    @property
    def duration(self) -> float | None:
        return None if self.end_time is None else self.end_time - self.start_time

    @property
    def shown_state(self) -> str:
        """The state name, or ``Crashed`` for a run whose process on this host is gone."""
        if self.end_time is None and self.pid and self.host == os.uname().nodename:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return "Crashed"
            except OSError:
                pass
        return self.state_name


@attrs.frozen
class StateRecord:
    """One state a task run went through (``worker`` is set on RUNNING states)."""

    type: str
    name: str
    timestamp: float
    message: str | None
    worker: str | None


@attrs.frozen
class TaskRunRecord:
    """A task run as the history recorded it: its final (or latest) state and where it ran."""

    id: str
    flow_run_id: str
    name: str
    task_name: str
    tags: str | None
    parameters: str | None
    created: float
    start_time: float | None
    end_time: float | None
    state_type: str
    state_name: str
    message: str | None
    traceback: str | None
    worker: str | None
    attempts: int
    states: tuple[StateRecord, ...] = ()

    @property
    def duration(self) -> float | None:
        if self.end_time is None or self.start_time is None:
            return None
        return self.end_time - self.start_time


_FLOW_COLUMNS = (
    "f.id, f.name, f.flow_name, f.parameters, f.parent_flow_run_id, f.parent_task_run_id, "
    "f.task_runner, f.host, f.pid, f.start_time, f.end_time, f.state_type, f.state_name, "
    "f.message, f.traceback, f.task_run_count, f.failed_count"
)


def recent_flow_runs(
    conn: sqlite3.Connection, limit: int = 20, flow_name: str | None = None, subflows: bool = False
) -> list[FlowRunRecord]:
    """The latest flow runs, newest first; top-level ones unless ``subflows``."""
    where, args = [], []  # type: ignore[var-annotated]
    if not subflows:
        where.append("f.parent_flow_run_id IS NULL")
    if flow_name is not None:
        where.append("f.flow_name = ?")
        args.append(flow_name)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_FLOW_COLUMNS} FROM flow_runs f {clause} ORDER BY f.start_time DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    return [FlowRunRecord(*row) for row in rows]


def find_flow_run(conn: sqlite3.Connection, ref: str) -> FlowRunRecord | None:
    """The flow run named by ``ref``: its id, a unique id prefix, or its name (latest first)."""
    ref = ref.strip()
    row = conn.execute(f"SELECT {_FLOW_COLUMNS} FROM flow_runs f WHERE f.id = ?", (ref,)).fetchone()
    if row is None and len(ref) >= 4:
        rows = conn.execute(
            f"SELECT {_FLOW_COLUMNS} FROM flow_runs f WHERE f.id LIKE ? LIMIT 2", (ref + "%",)
        ).fetchall()
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        row = conn.execute(
            f"SELECT {_FLOW_COLUMNS} FROM flow_runs f WHERE f.name = ? "
            "ORDER BY f.start_time DESC LIMIT 1",
            (ref,),
        ).fetchone()
    return FlowRunRecord(*row) if row is not None else None


def flow_runs_named(conn: sqlite3.Connection, name: str, limit: int) -> list[FlowRunRecord]:
    """Up to ``limit`` flow runs called ``name``, latest first."""
    rows = conn.execute(
        f"SELECT {_FLOW_COLUMNS} FROM flow_runs f WHERE f.name = ? ORDER BY f.start_time DESC LIMIT ?",
        (name, limit),
    ).fetchall()
    return [FlowRunRecord(*row) for row in rows]


def subflow_runs(conn: sqlite3.Connection, flow_run_id: str) -> list[FlowRunRecord]:
    """Every subflow run below ``flow_run_id``, at any depth, in start order."""
    found: list[FlowRunRecord] = []
    parents = [flow_run_id]
    while parents:
        marks = ",".join("?" * len(parents))
        rows = conn.execute(
            f"SELECT {_FLOW_COLUMNS} FROM flow_runs f WHERE f.parent_flow_run_id IN ({marks}) "
            "ORDER BY f.start_time",
            parents,
        ).fetchall()
        children = [FlowRunRecord(*row) for row in rows]
        found += children
        parents = [child.id for child in children]
    return sorted(found, key=lambda run: run.start_time)


def task_runs(conn: sqlite3.Connection, flow_run_ids: Sequence[str]) -> list[TaskRunRecord]:
    """The task runs of the given flow runs, latest version of each, in creation order."""
    latest: dict[str, TaskRunRecord] = {}
    for flow_run_id in flow_run_ids:
        rows = conn.execute(
            "SELECT task_runs FROM task_run_batches WHERE flow_run_id = ? ORDER BY seq",
            (flow_run_id,),
        ).fetchall()
        for (batch,) in rows:
            for fields in _decode(batch, flow_run_id):
                run_id = str(uuid.UUID(int=fields[1]))  # the file has the id's 128-bit int
                values: list[Any] = [run_id, flow_run_id, *fields[2:-1], _states(fields)]
                latest[run_id] = TaskRunRecord(*values)
    return sorted(latest.values(), key=lambda run: run.created)


def _decode(batch: Any, flow_run_id: str) -> list[tuple[Any, ...]]:
    """A batch's task runs; a damaged one is an error naming the flow run, not a crash."""
    try:
        runs = marshal.loads(batch) if isinstance(batch, bytes) else None
    except (ValueError, EOFError, TypeError):
        runs = None
    if not isinstance(runs, list) or not all(
        isinstance(r, tuple) and len(r) == len(TASK_RUN_FIELDS) for r in runs
    ):
        raise HistoryError(
            f"The task runs of flow run {flow_run_id} in the history file are damaged; "
            "the file's other runs can still be read"
        )
    return runs


def _states(fields: Sequence[Any]) -> tuple[StateRecord, ...]:
    """The run's states after its first Pending; the recorder leaves out the usual two
    (Running, then a final state), which the other fields already say."""
    run = dict(zip(TASK_RUN_FIELDS, fields, strict=True))
    if run["states"] is not None:
        return tuple(StateRecord(*state) for state in run["states"])
    found = []
    if run["start_time"] is not None:
        found.append(StateRecord("RUNNING", "Running", run["start_time"], None, run["worker"]))
    if run["end_time"] is not None:
        found.append(StateRecord(run["state_type"], run["state_name"], run["end_time"], run["message"], None))
    return tuple(found)
