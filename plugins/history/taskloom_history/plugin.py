"""Entry point of taskloom-history: settings, the lifecycle hooks that record runs, commands.

The flow run hooks are here, with the writers they start and stop; the task run hooks, on
the flow's hot path, are in `taskloom_history._runs`, imported here so that the plugin
manager finds them on this module.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from pathlib import Path
from typing import Any

from taskloom import hookimpl
from taskloom.config import Setting, load_settings
from taskloom.plugins import warn_once

from ._runs import taskloom_task_run_created as taskloom_task_run_created
from ._runs import taskloom_task_run_state_changed as taskloom_task_run_state_changed
from ._runs import writing

TASKLOOM_PLUGIN_API = 1

logger = logging.getLogger("taskloom.history")

_lock = threading.Lock()
# History file -> its Writer. A writer stays open a moment after its last flow run ends,
# so a loop of short flows opens the file, starts a writer thread and folds SQLite's
# write-ahead log back into the file once, not once per flow run (each costs milliseconds).
_writers: dict[Path, Any] = {}
_KEEP_OPEN = 2.0  # seconds a writer with no flow run waits before it closes


@hookimpl
def taskloom_add_settings() -> list[Setting]:
    return [
        Setting("history.enabled", bool, True, "Record flow and task runs in the history file."),
        Setting("history.path", str, ".taskloom/history.db", "The SQLite file run history goes to."),
        Setting(
            "history.timeout", float, 5.0,
            "Seconds a process that exits keeps trying to record runs in a history file another "
            "program holds locked (flows never wait for it: the writer thread retries).",
        ),
    ]


@hookimpl
def taskloom_add_commands(subparsers: Any) -> None:
    from .cli import add_commands

    add_commands(subparsers)


def history_path(settings: Any = None) -> Path:
    """The history file the settings name, made absolute against the current directory."""
    settings = settings if settings is not None else load_settings()
    return Path(settings["history.path"]).expanduser().resolve()


@hookimpl
def taskloom_flow_run_started(flow_run: Any, task_runner: Any, settings: Any) -> None:
    try:
        writer = _writer_for(flow_run, settings)
    except Exception as exc:  # never a reason for a flow to fail
        _report(f"Run history is off for flow run {flow_run.name!r}: {exc}.")
        return
    if writer is not None:
        text = writing[id(flow_run.id)][1]
        writer.flow_started(flow_run, text, getattr(task_runner, "name", type(task_runner).__name__))


def _writer_for(flow_run: Any, settings: Any) -> Any:
    if flow_run.parent_flow_run_id is not None:
        # A subflow writes where its parent writes, whatever the settings say now.
        parent = writing.get(id(flow_run.parent_flow_run_id))
        if parent is None:
            return None
        writer = parent[0]
        with _lock:
            writer.active += 1
            writing[id(flow_run.id)] = (writer, str(flow_run.id))
        return writer
    if not settings["history.enabled"]:
        return None
    path = history_path(settings)
    from ._writer import Writer

    with _lock:
        writer = _writers.get(path)
        if writer is None:
            if not _writers:
                atexit.register(_close_all)  # once per process: unregistered when it runs
            writer = _writers[path] = Writer(
                path, float(settings["history.timeout"]), _retire, _KEEP_OPEN
            )
        writer.active += 1
        writer.idle_since = None
        try:
            writer.open()
        except BaseException:
            writer.active -= 1
            if not writer.active:
                del _writers[path]
            raise
        writing[id(flow_run.id)] = (writer, str(flow_run.id))
    return writer


@hookimpl
def taskloom_flow_run_finished(flow_run: Any, state: Any) -> None:
    found = writing.get(id(flow_run.id))
    if found is None:
        return
    writer = found[0]
    top_level = flow_run.parent_flow_run_id is None
    try:
        writer.flow_finished(found[1], state, wait=top_level)
    finally:
        with _lock:
            del writing[id(flow_run.id)]
            writer.active -= 1
            if writer.active == 0:
                writer.idle_since = time.monotonic()  # its thread closes it in a moment


def _retire(writer: Any) -> bool:
    """Called by an idle writer's thread: True if it may close (no flow run took it up)."""
    with _lock:
        if writer.active:
            return False
        path = writer.path
        if _writers.get(path) is writer:
            del _writers[path]
        return True


def _close_all() -> None:
    # At interpreter exit: write what is left and close the files, so none keeps its log.
    atexit.unregister(_close_all)
    with _lock:
        writers = list(_writers.values())
        _writers.clear()
    for writer in writers:
        writer.close()


def _report(message: str) -> None:
    # Once per process and problem (the run's name left out): not on every run of a loop.
    warn_once(logger, "%s", message, key=("history", message.split(": ", 1)[-1]))

