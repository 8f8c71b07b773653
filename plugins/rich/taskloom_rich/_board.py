"""The counters behind the display: plain integers under one lock, cheap to update.

The hooks only count; rich's refresh thread reads a snapshot ten times a second and draws.
"""

from __future__ import annotations

import threading
import uuid

__all__ = ["Board", "Row"]


class Row:
    """Task runs of one task name: created, settled (any final state) and failed or crashed."""

    __slots__ = ("done", "failed", "total")

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.failed = 0


class Board:
    """Every task name seen while one display is live, in the order they first appeared."""

    __slots__ = ("_lock", "_open", "_rows", "version")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, Row] = {}
        # Runs created but not yet settled: a final state counts once, and only for a run
        # this board saw created.
        self._open: dict[uuid.UUID, Row] = {}
        #: Grows with every change, so the display redraws only when something changed.
        self.version = 0

    def created(self, task_name: str, run_id: uuid.UUID) -> None:
        with self._lock:
            row = self._rows.get(task_name)
            if row is None:
                row = self._rows[task_name] = Row()
            row.total += 1
            self._open[run_id] = row
            self.version += 1

    def settled(self, run_id: uuid.UUID, failed: bool) -> None:
        with self._lock:
            row = self._open.pop(run_id, None)
            if row is not None:
                row.done += 1
                if failed:
                    row.failed += 1
                self.version += 1

    def snapshot(self) -> list[tuple[str, int, int, int]]:
        """``(task name, done, total, failed)`` per task name."""
        with self._lock:
            return [(name, r.done, r.total, r.failed) for name, r in self._rows.items()]
