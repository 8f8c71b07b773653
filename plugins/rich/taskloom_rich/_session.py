"""Which flow runs own the display, and the one display of this process.

A top-level flow run starts the display; flow runs that start while it is live (subflows, and
top-level flows in other threads) draw into it, and it stops when the last top-level flow run
that uses it finishes. rich allows one live display per terminal, so there is one per process.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import uuid
from typing import TYPE_CHECKING

from taskloom import plugins
from taskloom.plugins import warn_once

from ._board import Board
from ._switch import SETTING, progress_wanted, stream_is_terminal

if TYPE_CHECKING:
    from taskloom.config import Settings

    from .display import ProgressDisplay

__all__ = ["begin", "board", "end", "report", "stop_all"]

_lock = threading.Lock()
_owners: set[uuid.UUID] = set()
_display: ProgressDisplay | None = None
_logger = logging.getLogger("taskloom.rich")
_COUNTER_NAME = "taskloom-rich-counter"

#: The live display's counters, or None: read without the lock on the per-task hot path.
board: Board | None = None


def report(exc: BaseException) -> None:
    """Say once per process what went wrong: a broken display must not stop the flow."""
    message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    warn_once(_logger, "Progress display: %s", message, key="taskloom-rich")


def begin(flow_run_id: uuid.UUID, settings: Settings) -> None:
    """A top-level flow run started: join the live display, or start one if it is wanted."""
    global _display, board
    with _lock:
        if _display is not None:
            _owners.add(flow_run_id)
            return
        stream = sys.stderr
        try:
            value, where = settings.get(SETTING, "auto"), settings.sources.get(SETTING)
            wanted = progress_wanted(value, stream, where=where)
        except ValueError as exc:
            report(exc)
            wanted = progress_wanted("auto", stream)
        if not wanted:
            return
        from . import _counter
        from .display import ProgressDisplay

        new_board = Board()
        display = ProgressDisplay(new_board, stream, redirect_stdout=stream_is_terminal(sys.stdout))
        # Counting starts before the first frame, so no task run created meanwhile is lost;
        # the flow run's driver, made after this hook, sees the counter's hooks.
        board = new_board
        plugins.register(_counter, name=_COUNTER_NAME)
        try:
            display.start()
        except BaseException:
            plugins.unregister(_counter)
            board = None
            raise
        _display = display
        _owners.add(flow_run_id)


def end(flow_run_id: uuid.UUID) -> None:
    """A flow run finished: stop the display if it was the last top-level run using it."""
    with _lock:
        if flow_run_id not in _owners:
            return
        _owners.discard(flow_run_id)
        if not _owners:
            _stop()


def stop_all() -> None:
    """Stop the display whatever runs own it (at interpreter exit)."""
    with _lock:
        _owners.clear()
        _stop()


def _stop() -> None:
    global _display, board
    display, _display = _display, None
    if display is None:
        return
    from . import _counter

    try:
        plugins.unregister(_counter)
        display.stop()
    finally:
        board = None


# A flow run that never reached its finish hook must not leave the cursor hidden.
atexit.register(stop_all)
