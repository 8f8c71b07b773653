"""Recording runs: hooks append to a queue, one writer thread per history file writes batches.

The hooks run on the flow's hot path (several per task run), so they only append a tuple to a
`collections.deque` (thread-safe, no lock). The writer thread wakes every quarter second,
turns what queued up into rows and writes them in one transaction. A top-level flow run's end
waits for its rows to be written, so `taskloom runs` sees a run as soon as the flow returns.
Nothing here may fail a flow: a history file that cannot be used is reported once and the
runs are not recorded.
"""

from __future__ import annotations

import json
import logging
import os
import reprlib
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from taskloom.context import FlowRun, TaskRun
from taskloom.states import State, StateType

from .store import HistoryError, _explain, connect

logger = logging.getLogger("taskloom.history")

_FLOW_START, _FLOW_END, _TASK, _STATE, _FLUSH = range(5)
_INTERVAL = 0.25
_SHOW_AFTER = 1.0
_warned: set[tuple[Path, str]] = set()
# By value: a frozenset of strings hashes in C, of Enum members through a Python __hash__.
_FINAL = frozenset(t.value for t in StateType if t.is_final)
_FAILED = frozenset({StateType.FAILED.value, StateType.CRASHED.value})
_HOST = os.uname().nodename if hasattr(os, "uname") else "localhost"


class _ParameterRepr(reprlib.Repr):
    """Short reprs of parameters; a future shows the run it stands for, not its live state."""

    def __init__(self) -> None:
        super().__init__()  # keyword options arrived only in Python 3.12
        self.maxlevel, self.maxstring, self.maxother, self.maxlist, self.maxdict = 3, 120, 120, 10, 10

    def repr_instance(self, obj: Any, level: int) -> str:
        task_run = getattr(obj, "task_run", None)
        if isinstance(task_run, TaskRun):
            return f"<future of {task_run.name}>"
        try:
            return super().repr_instance(obj, level)
        except Exception:
            return f"<{type(obj).__name__} object>"


_repr = _ParameterRepr().repr
_ATOMIC = frozenset({int, float, bool, type(None)})


def parameters_text(parameters: Any) -> str | None:
    """The parameters as ``name=repr, ...`` with each repr shortened."""
    if not parameters:
        return None
    try:
        parts = []
        for name, value in dict(parameters).items():
            kind = type(value)
            if kind in _ATOMIC or (kind is str and len(value) <= 120):
                parts.append(f"{name}={value!r}")  # the common case, without reprlib's walk
            else:
                parts.append(f"{name}={_repr(value)}")
        return ", ".join(parts)
    except Exception as exc:  # a mapping that changed while it was read
        return f"<unreadable: {type(exc).__name__}: {exc}>"


class Recorder:
    """Writes the runs of one history file; started by the first flow run that uses it."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.queue: deque[tuple[Any, ...]] = deque()
        self.active = 0  # flow runs in this process writing here
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        # Writer thread only: per unfinished task run (by identity of its TaskRun), its row.
        self._runs: dict[TaskRun, list[Any]] = {}
        # Writer thread only: rows changed but not written yet (too young to show).
        self._held: dict[TaskRun, list[Any]] = {}
        # Writer thread only: per flow run id, [task runs created, task runs failed].
        self._counts: dict[str, list[int]] = {}

    # -- called by the hooks, in the flow's threads ------------------------------------------

    def open(self) -> None:
        """Open the file and start the writer; raises `HistoryError` if the file is unusable."""
        if self._thread is None:
            self._conn = connect(self.path, self.timeout)
            self._thread = threading.Thread(
                target=self._loop, name=f"taskloom-history-{self.path.name}", daemon=True
            )
            self._thread.start()

    def flow_started(self, flow_run: FlowRun, runner_name: str) -> None:
        self.queue.append((_FLOW_START, flow_run, runner_name, time.time(), os.getpid()))

    def flow_finished(self, flow_run: FlowRun, state: State, wait: bool) -> None:
        self.queue.append((_FLOW_END, flow_run, state))
        if wait:
            self.flush()

    def flush(self) -> bool:
        """Wait until everything queued so far is written; False if that took too long."""
        done = threading.Event()
        self.queue.append((_FLUSH, done))
        self._wake.set()
        return done.wait(self.timeout + 5.0)

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._thread = None
            self.queue.append((_FLUSH, None))  # None: stop after this batch
            self._wake.set()
            thread.join(self.timeout + 5.0)

    # -- the writer thread -----------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                self._wake.wait(_INTERVAL)
                self._wake.clear()
                if self._drain():
                    return
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _drain(self) -> bool:
        """Write what is queued; True when asked to stop."""
        queue = self.queue
        flows: list[tuple[Any, ...]] = []
        flow_ends: list[tuple[Any, ...]] = []
        touched: dict[TaskRun, list[Any]] = {}
        waiters: list[threading.Event] = []
        stop = False
        runs, counts, held = self._runs, self._counts, self._held
        forced: list[list[Any]] = []
        running, final = StateType.RUNNING, _FINAL
        failed_types = _FAILED
        last_flow_run_id: Any = None
        last_flow_run_text = ""
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                break
            kind = item[0]
            if kind == _STATE:
                task_run, state = item[1], item[2]
                row = runs.get(task_run)
                if row is None:  # a state of a run created before history started
                    continue
                stype = state.type
                row[14].append(state)
                if stype is running:
                    row[13] += 1
                    row[12] = state.worker
                    if row[6] is None:
                        row[6] = state.timestamp
                elif stype._value_ in final or state.name == "NotReady":  # NotReady: never runs
                    row[7] = state.timestamp
                    row[11] = state.traceback
                    del runs[task_run]
                    if stype._value_ in failed_types:
                        counts[row[15]][1] += 1
                row[8], row[9], row[10] = stype._value_, state.name, state.message
                touched[task_run] = row
            elif kind == _TASK:
                task_run, parameters, created = item[1], item[2], item[3]
                flow_run_id = task_run.flow_run_id
                if flow_run_id is not last_flow_run_id:  # the same object for a flow's runs
                    last_flow_run_id, last_flow_run_text = flow_run_id, str(flow_run_id)
                    counts.setdefault(last_flow_run_text, [0, 0])
                counts[last_flow_run_text][0] += 1
                row = [
                    str(task_run.id), task_run.name, task_run.task_name,
                    ",".join(sorted(task_run.tags)) if task_run.tags else None,
                    parameters, created, None, None, "PENDING", "Pending", None, None, None, 0, [],
                    last_flow_run_text,
                ]
                runs[task_run] = touched[task_run] = row
            elif kind == _FLOW_START:
                flow_run, runner_name, started, pid = item[1], item[2], item[3], item[4]
                flows.append((
                    str(flow_run.id), flow_run.name, flow_run.flow_name,
                    parameters_text(flow_run.parameters),
                    _str(flow_run.parent_flow_run_id), _str(flow_run.parent_task_run_id),
                    runner_name, _HOST, pid, started, None, "RUNNING", "Running", None, None, 0, 0,
                ))
            elif kind == _FLOW_END:
                flow_run, state = item[1], item[2]
                text = str(flow_run.id)
                created, failed = counts.pop(text, (0, 0))
                for task_run in [t for t, r in runs.items() if r[15] == text]:
                    # Runs the flow run left unfinished: nothing more comes, write them now.
                    forced.append(runs.pop(task_run))
                    held.pop(task_run, None)
                flow_ends.append((
                    state.timestamp, state.type.value, state.name, state.message,
                    _flow_traceback(state), created, failed, text,
                ))
            elif item[1] is None:
                stop = True
            else:
                waiters.append(item[1])
        # A run still going is written once it is a second old, so a long task shows while
        # it runs; a quick one waits for its final state and is written once.
        held.update(touched)
        rows = forced
        if held:
            young = time.time() - _SHOW_AFTER
            ready = [t for t, r in held.items() if r[7] is not None or r[5] < young]
            rows += [held.pop(t) for t in ready]
        if flows or flow_ends or rows:
            self._write(flows, flow_ends, _batches(rows))
        for waiter in waiters:
            waiter.set()
        return stop

    def _write(
        self,
        flows: list[tuple[Any, ...]],
        flow_ends: list[tuple[Any, ...]],
        batches: list[tuple[str, float, str]],
    ) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if flows:
                    conn.executemany(
                        "INSERT OR REPLACE INTO flow_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        flows,
                    )
                if batches:
                    conn.executemany(
                        "INSERT INTO task_run_batches (flow_run_id, written, task_runs) VALUES (?,?,?)",
                        batches,
                    )
                if flow_ends:
                    conn.executemany(
                        "UPDATE flow_runs SET end_time = ?, state_type = ?, state_name = ?, "
                        "message = ?, traceback = ?, task_run_count = ?, failed_count = ? "
                        "WHERE id = ?",
                        flow_ends,
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._warn(_explain(self.path, exc, self.timeout))

    def _warn(self, error: HistoryError) -> None:
        # Once per file and process: a recorder lives for one top-level flow run, the
        # problem with the file usually for longer.
        key = (self.path, str(error))
        if key not in _warned:
            _warned.add(key)
            logger.warning("Run history: some runs were not recorded: %s.", error)


def _batches(rows: Any) -> list[tuple[str, float, str]]:
    """One (flow run id, time, JSON array of task runs) per flow run, in `TASK_RUN_FIELDS` order."""
    by_flow_run: dict[str, list[list[Any]]] = {}
    for row in rows:
        if row[4] is not None and type(row[4]) is not str:
            row[4] = parameters_text(row[4])  # once, here, off the flow's threads
        states = row[14]
        by_flow_run.setdefault(row[15], []).append([*row[:14], _states_list(states)])
    now = time.time()
    return [(flow_run_id, now, json.dumps(runs)) for flow_run_id, runs in by_flow_run.items()]


def _states_list(states: list[State]) -> list[Any] | None:
    """The states after the first Pending; None for the usual Running then a final state
    (the row's own fields say all of that), which saves most of the encoding."""
    if len(states) == 2 and states[0].name == "Running" and states[1].type is not StateType.PENDING:
        return None
    return [(s.type._value_, s.name, s.timestamp, s.message, s.worker) for s in states]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _flow_traceback(state: State) -> str | None:
    if state.traceback:
        return state.traceback
    exc = state.exception
    if exc is None:
        return None
    import traceback

    return "".join(traceback.format_exception(exc))
