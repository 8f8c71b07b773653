"""The history's writer: one thread per history file takes the rows the hooks made and writes
them.

The thread wakes four times a second, takes the finished rows (`taskloom_history._runs`) and
writes them as one marshal-encoded row per flow run, in one transaction: no Python loop over
task runs there, since under the GIL any such loop is paid by the flow too. A top-level flow
run's end waits for one try at writing its rows, so `taskloom runs` sees a run as soon as the
flow returns; the file stays open a moment longer, for the next flow run. Nothing here may
fail or hold up a flow: a file another program holds locked is tried again by the writer until
it is free (and for ``timeout`` seconds at exit, then what is left is counted in one
warning); a history file that cannot be used is reported once and the runs are not recorded.
"""

from __future__ import annotations

import logging
import marshal
import operator
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskloom.context import FlowRun
from taskloom.plugins import warn_once
from taskloom.states import State, StateType

from ._runs import (
    CREATED,
    EARLIER,
    PARAMETERS,
    RUNNING,
    TASK_RUN,
    WRITING,
    make_row,
    open_runs,
    parameters_text,
)
from .store import HistoryError, _explain, connect

__all__ = ["Writer"]

logger = logging.getLogger("taskloom.history")

_FLOW_START, _FLOW_END, _FLUSH = range(3)
_INTERVAL = 0.25
# How long one write waits for a file another process is writing. Short: a busy file is not
# a reason for anyone to wait (a flow's end waits for one attempt); what did not fit is kept
# and written on the next wake-up, and at exit for up to ``history.timeout`` seconds.
_ATTEMPT_SECONDS = 0.1
_SHOW_AFTER = 1.0
# By value: a frozenset of strings hashes in C, of Enum members through a Python __hash__.
_FAILED = frozenset({StateType.FAILED.value, StateType.CRASHED.value})
# Of a row: its flow run id, its state type.
_FLOW_ID = operator.itemgetter(0)
_STATE_TYPE = operator.itemgetter(9)
_HOST = os.uname().nodename if hasattr(os, "uname") else "localhost"


class Writer:
    """Writes the runs of one history file; started by the first flow run that uses it."""

    def __init__(
        self,
        path: Path,
        timeout: float,
        retire: Callable[[Writer], bool] | None = None,
        keep_open: float = 0.0,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.queue: deque[tuple[Any, ...]] = deque()
        self.active = 0  # flow runs in this process writing here
        # When the last of them ended (monotonic), or None while one runs. Once it is
        # ``keep_open`` seconds old the writer asks ``retire`` whether it may close.
        self.idle_since: float | None = None
        self._retire = retire
        self._keep_open = keep_open
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        # Finished rows (tuples in `TASK_RUN_FIELDS` order): appended by the hooks, taken by
        # the writer with popleft, so neither side needs a lock (both are atomic in a deque).
        self.rows: deque[tuple[Any, ...]] = deque()
        # Flow run id -> [task runs, failed]: counted by the writer from the rows it takes,
        # since hooks of different task runs may run at once in different threads.
        self._counts: dict[str, list[int]] = {}
        self._shown: set[int] = set()  # ids (as ints) of unfinished runs written as such
        self._shown_at = 0.0
        # What a write could not record because another program held the file: flow run
        # starts, flow run ends and task run rows, written with the next batch.
        self._held: tuple[list[tuple[Any, ...]], ...] = ([], [], [])

    # -- called by the hooks, in the flow's threads ------------------------------------------

    def open(self) -> None:
        """Open the file and start the writer; raises `HistoryError` if the file is unusable."""
        if self._thread is None:
            self._conn = connect(self.path, self.timeout)
            self._conn.execute(f"PRAGMA busy_timeout = {int(_ATTEMPT_SECONDS * 1000)}")
            self._thread = threading.Thread(
                target=self._loop, name=f"taskloom-history-{self.path.name}", daemon=True
            )
            self._thread.start()

    def flow_started(self, flow_run: FlowRun, flow_run_id: str, runner_name: str) -> None:
        self.queue.append((_FLOW_START, flow_run, flow_run_id, runner_name, time.time(), os.getpid()))

    def flow_finished(self, flow_run_id: str, state: State, wait: bool) -> None:
        self.queue.append((_FLOW_END, flow_run_id, state))
        if wait:
            self.flush()

    def flush(self) -> bool:
        """Wait until everything queued so far is written; False if that took too long, or
        if the file is busy (the writer keeps the runs and tries again on its own)."""
        if any(self._held):
            self._wake.set()
            return False
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
                    self._last_tries()
                    return
                idle = self.idle_since
                if (
                    idle is not None
                    and not any(self._held)
                    and self._retire is not None
                    and time.monotonic() - idle >= self._keep_open
                    and self._retire(self)
                ):
                    self._thread = None
                    self._drain()
                    self._last_tries()
                    return
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _drain(self) -> bool:
        """Write what is queued; True when asked to stop."""
        queue = self.queue
        flows: list[tuple[Any, ...]] = []
        ended: list[tuple[str, State]] = []
        extra: list[tuple[Any, ...]] = []  # unfinished runs to show
        waiters: list[threading.Event] = []
        stop = False
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                break
            kind = item[0]
            if kind == _FLOW_START:
                flow_run, text, runner_name, started, pid = item[1:]
                self._counts[text] = [0, 0]
                flows.append((
                    text, flow_run.name, flow_run.flow_name,
                    parameters_text(flow_run.parameters),
                    _str(flow_run.parent_flow_run_id), _str(flow_run.parent_task_run_id),
                    runner_name, _HOST, pid, started, None, "RUNNING", "Running", None, None, 0, 0,
                ))
            elif kind == _FLOW_END:
                text, state = item[1], item[2]
                unfinished = self._unfinished(text)
                extra += unfinished
                self._counts.setdefault(text, [0, 0])[0] += len(unfinished)
                ended.append((text, state))
            elif item[1] is None:
                stop = True
            else:
                waiters.append(item[1])
        # After the queue: every row of a flow run that ended above was appended before.
        taken = self.rows.popleft
        rows = [taken() for _ in range(len(self.rows))]
        if self._shown:
            self._shown.difference_update([row[1] for row in rows])
        for text, taken_rows in _by_flow_run(rows).items():
            counts = self._counts.setdefault(text, [0, 0])
            counts[0] += len(taken_rows)
            # Counted in C (True counts 1): no Python step per row.
            counts[1] += sum(map(_FAILED.__contains__, map(_STATE_TYPE, taken_rows)))
        flow_ends = []
        for text, state in ended:
            created, failed = self._counts.pop(text, [0, 0])
            flow_ends.append((
                state.timestamp, state.type.value, state.name, state.message,
                _flow_traceback(state), created, failed, text,
            ))
        now = time.time()
        if now - self._shown_at >= _SHOW_AFTER:
            self._shown_at = now
            extra += self._going(now - _SHOW_AFTER)
        if flows or flow_ends or rows or extra or any(self._held):
            self._write(flows, flow_ends, rows + extra)
        for waiter in waiters:
            waiter.set()
        return stop

    def _going(self, before: float) -> list[tuple[Any, ...]]:
        """Rows of this file's runs that started over a second ago and were not written since.

        A walk over every open run, once a second: cheaper than keeping the running ones
        apart, which would cost each task run two more dict operations on the hot path."""
        found = []
        for key, run in open_runs.copy().items():
            state = run[RUNNING]
            if state is None or state.timestamp > before or key in self._shown:
                continue
            writer, text = run[WRITING]
            if writer is not self:
                continue
            earlier = run[EARLIER] or ()
            if any(s is state for s in earlier):
                continue  # that attempt ended meanwhile (a retry): the next walk shows the new one
            self._shown.add(key)
            states = [*earlier, state]
            found.append(make_row(text, run[TASK_RUN], run[PARAMETERS], run[CREATED], states, ended=False))
        return found

    def _unfinished(self, text: str) -> list[tuple[Any, ...]]:
        """Rows of the runs a flow run left without a final state; nothing more will come."""
        found = []
        for key, run in open_runs.copy().items():
            if run[WRITING][1] != text or open_runs.pop(key, None) is None:  # None: ended meanwhile
                continue
            states = [*(run[EARLIER] or ())]
            if run[RUNNING] is not None:
                states.append(run[RUNNING])
            self._shown.discard(key)
            found.append(make_row(text, run[TASK_RUN], run[PARAMETERS], run[CREATED], states, ended=False))
        return found

    def _write(
        self,
        flows: list[tuple[Any, ...]],
        flow_ends: list[tuple[Any, ...]],
        rows: list[tuple[Any, ...]],
    ) -> None:
        """Write the runs, with any held back before; keep them all if the file is busy."""
        if any(self._held):
            held_flows, held_ends, held_rows = self._held
            flows, flow_ends, rows = held_flows + flows, held_ends + flow_ends, held_rows + rows
            self._held = ([], [], [])
        conn = self._conn
        if conn is None:
            return
        batches = _batches(rows) if rows else []
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
            if _busy(exc):
                # Another program holds the file: keep the runs for the next try, in this
                # thread; nobody waits for it.
                self._held = (flows, flow_ends, rows)
                return
            self._warn(_explain(self.path, exc, self.timeout))

    def _last_tries(self) -> None:
        """At the end: keep trying a busy file for ``timeout`` seconds, then say what is lost."""
        deadline = time.monotonic() + self.timeout
        while any(self._held):
            if time.monotonic() >= deadline:
                flows, flow_ends, rows = self._held
                flow_runs = len({row[0] for row in flows} | {row[-1] for row in flow_ends})
                warn_once(
                    logger,
                    "Run history: %d flow run(s) and %d task run(s) were not recorded: %s stayed "
                    "locked by another program until this process ended (more than %gs); close "
                    "it or raise history.timeout.",
                    flow_runs, len({row[1] for row in rows}), self.path, self.timeout,
                    key=(self.path, "held at exit"),
                )
                return
            time.sleep(_INTERVAL)
            self._write([], [], [])

    def _warn(self, error: HistoryError) -> None:
        # Once per file and process: a recorder lives while flow runs use the file, the
        # problem with the file usually for longer.
        warn_once(
            logger, "Run history: some runs were not recorded: %s.", error, key=(self.path, str(error))
        )


def _busy(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _by_flow_run(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows by their flow run's id; without a Python step per row when they are all of
    one flow run, as they mostly are."""
    flow_ids = set(map(_FLOW_ID, rows))
    if len(flow_ids) == 1:
        return {flow_ids.pop(): rows}
    return {text: [row for row in rows if row[0] == text] for text in flow_ids}


def _batches(rows: list[tuple[Any, ...]]) -> list[tuple[str, float, bytes]]:
    """One (flow run id, time, encoded task runs) per flow run.

    marshal, not JSON: it encodes these tuples of plain values seven times faster, and under
    the GIL the flow pays for every microsecond the writer spends (see docs/history.md). The
    flow run's id in each row is one string object, which marshal writes once.
    """
    now = time.time()
    return [(text, now, marshal.dumps(group)) for text, group in _by_flow_run(rows).items()]


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
