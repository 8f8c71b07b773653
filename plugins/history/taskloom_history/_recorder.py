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
import operator
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
_RUNNING = StateType.RUNNING
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
    if len(parameters) == 1:  # the common case, without the loop
        [(name, value)] = parameters.items()
        kind = type(value)
        if kind in _ATOMIC or (kind is str and len(value) <= 120):
            return f"{name}={value!r}"
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
        # Writer thread only: per unfinished task run (by identity of its TaskRun), what
        # came so far; and those of them that started but were not written since.
        self._runs: dict[TaskRun, list[Any]] = {}
        self._shown = 0.0
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
        done: list[list[Any]] = []  # runs to write: ended, or still going and shown
        waiters: list[threading.Event] = []
        stop = False
        runs, counts = self._runs, self._counts
        running = _RUNNING
        last_flow_run_id: Any = None
        last_flow_run_text = ""
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                break
            kind = item[0]
            if kind == _STATE:
                state = item[2]
                entry = runs.get(item[1])
                if entry is None:  # a state of a run created before history started
                    continue
                entry[4].append(state)
                if state.type is running:
                    continue
                value = state.type._value_
                if value in _FINAL or state.name == "NotReady":  # NotReady: never runs
                    del runs[item[1]]
                    done.append(entry)
                    if value in _FAILED:
                        counts[entry[3]][1] += 1
            elif kind == _TASK:
                task_run = item[1]
                flow_run_id = task_run.flow_run_id
                if flow_run_id is not last_flow_run_id:  # the same object for a flow's runs
                    last_flow_run_id, last_flow_run_text = flow_run_id, str(flow_run_id)
                    counts.setdefault(last_flow_run_text, [0, 0])
                counts[last_flow_run_text][0] += 1
                # task run, parameters, created, flow run id, states so far, last written
                runs[task_run] = [task_run, item[2], item[3], last_flow_run_text, [], 0.0]
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
                for task_run in [t for t, e in runs.items() if e[3] == text]:
                    # Runs the flow run left unfinished: nothing more comes, write them now.
                    done.append(runs.pop(task_run))
                created, failed = counts.pop(text, [0, 0])
                flow_ends.append((
                    state.timestamp, state.type.value, state.name, state.message,
                    _flow_traceback(state), created, failed, text,
                ))
            elif item[1] is None:
                stop = True
            else:
                waiters.append(item[1])
        # A quick run is written once, with its final state. Once a second, runs still going
        # that changed since they were last written are written too, so a long task shows
        # while it runs.
        now = time.time()
        if runs and now - self._shown >= _SHOW_AFTER:
            self._shown = now
            old = now - _SHOW_AFTER
            going = [e for e in runs.values() if e[4] and e[5] < e[4][-1].timestamp and e[2] < old]
            for entry in going:
                entry[5] = now
            done += going
        if flows or flow_ends or done:
            self._write(flows, flow_ends, _batches(done))
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


_task_run_fields = operator.attrgetter("id", "name", "task_name", "tags")


def _row(entry: list[Any]) -> list[Any]:
    """A task run in `TASK_RUN_FIELDS` order, from its queued creation and states."""
    task_run, parameters, created, _, states, _ = entry
    run_id, name, task_name, tags = _task_run_fields(task_run)
    if len(states) == 2:  # the usual Running then final: the fields say all of it
        first, last = states
        if first.type is _RUNNING and last.type._value_ in _FINAL:
            return [
                run_id.hex, name, task_name, ",".join(sorted(tags)) if tags else None,
                parameters_text(parameters), int(created * 1e6), int(first.timestamp * 1e6),
                int(last.timestamp * 1e6), last.type._value_, last.name, last.message,
                last.traceback, first.worker, 1, None,
            ]
    start = end = worker = traceback = None
    attempts = 0
    for state in states:
        if state.type is _RUNNING:
            attempts += 1
            worker = state.worker
            if start is None:
                start = state.timestamp
    if states:
        last = states[-1]
        state_type, state_name, message = last.type._value_, last.name, last.message
        if state_type in _FINAL or state_name == "NotReady":
            end, traceback = last.timestamp, last.traceback
    else:
        state_type, state_name, message = "PENDING", "Pending", None
    kept = [(s.type._value_, s.name, int(s.timestamp * 1e6), s.message, s.worker) for s in states]
    return [
        run_id.hex, name, task_name, ",".join(sorted(tags)) if tags else None,
        parameters_text(parameters), int(created * 1e6), _micros(start), _micros(end),
        state_type, state_name, message, traceback, worker, attempts, kept,
    ]


def _micros(timestamp: float | None) -> int | None:
    # Whole microseconds: JSON writes an int in half the time of a float.
    return None if timestamp is None else int(timestamp * 1e6)


def _batches(entries: list[list[Any]]) -> list[tuple[str, float, str]]:
    """One (flow run id, time, JSON array of task runs) per flow run."""
    by_flow_run: dict[str, list[list[Any]]] = {}
    for entry in entries:
        by_flow_run.setdefault(entry[3], []).append(_row(entry))
    now = time.time()
    return [(flow_run_id, now, json.dumps(rows)) for flow_run_id, rows in by_flow_run.items()]


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
