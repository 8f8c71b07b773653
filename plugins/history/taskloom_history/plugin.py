"""Entry point of taskloom-history: settings, the lifecycle hooks that record runs, commands."""

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
from taskloom.states import StateType

TASKLOOM_PLUGIN_API = 1

logger = logging.getLogger("taskloom.history")

_lock = threading.Lock()
# History file -> its Recorder. A recorder stays open a moment after its last flow run ends,
# so a loop of short flows opens the file, starts a writer thread and folds SQLite's
# write-ahead log back into the file once, not once per flow run (2 to 5 ms each here).
_recorders: dict[Path, Any] = {}
_KEEP_OPEN = 2.0  # seconds a recorder with no flow run waits before it closes
# Flow run -> (the Recorder writing it, the run's id as text), keyed by the identity of the
# id object, which the run's task runs and subflow runs share: a UUID hashes through Python
# code, and the task hooks look this up three times per run.
_writing: dict[int, tuple[Any, str]] = {}
_RUNNING = StateType.RUNNING


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
        recorder = _recorder_for(flow_run, settings)
    except Exception as exc:  # never a reason for a flow to fail
        _report(f"Run history is off for flow run {flow_run.name!r}: {exc}.")
        return
    if recorder is not None:
        text = _writing[id(flow_run.id)][1]
        recorder.flow_started(flow_run, text, getattr(task_runner, "name", type(task_runner).__name__))


def _recorder_for(flow_run: Any, settings: Any) -> Any:
    if flow_run.parent_flow_run_id is not None:
        # A subflow writes where its parent writes, whatever the settings say now.
        parent = _writing.get(id(flow_run.parent_flow_run_id))
        if parent is None:
            return None
        recorder = parent[0]
        with _lock:
            recorder.active += 1
            _writing[id(flow_run.id)] = (recorder, str(flow_run.id))
        return recorder
    if not settings["history.enabled"]:
        return None
    path = history_path(settings)
    from ._recorder import Recorder

    with _lock:
        recorder = _recorders.get(path)
        if recorder is None:
            if not _recorders:
                atexit.register(_close_all)  # once per process: unregistered when it runs
            recorder = _recorders[path] = Recorder(
                path, float(settings["history.timeout"]), _retire, _KEEP_OPEN
            )
        recorder.active += 1
        recorder.idle_since = None
        try:
            recorder.open()
        except BaseException:
            recorder.active -= 1
            if not recorder.active:
                del _recorders[path]
            raise
        _writing[id(flow_run.id)] = (recorder, str(flow_run.id))
    return recorder


@hookimpl
def taskloom_task_run_created(task_run: Any, parameters: Any) -> None:
    found = _writing.get(id(task_run.flow_run_id))
    if found is not None:
        # `Recorder.task_runs` and the rest, written here: a call less on every run's path.
        recorder, key = found[0], task_run.id.int
        recorder.task_runs[key] = task_run
        recorder.parameters[key] = parameters
        recorder.created[key] = time.time()  # last: the writer reads a run only once it is here


@hookimpl
def taskloom_task_run_state_changed(task_run: Any, old: Any, new: Any) -> None:
    if old is None:
        return  # the Pending a run is created in: its creation says as much
    found = _writing.get(id(task_run.flow_run_id))
    if found is not None:
        if new.type is _RUNNING:
            found[0].started[task_run.id.int] = new  # what the run shows until it ends
        else:
            found[0].state_changed(task_run, old, new, found[1])


@hookimpl
def taskloom_flow_run_finished(flow_run: Any, state: Any) -> None:
    found = _writing.get(id(flow_run.id))
    if found is None:
        return
    recorder = found[0]
    top_level = flow_run.parent_flow_run_id is None
    try:
        recorder.flow_finished(found[1], state, wait=top_level)
    finally:
        with _lock:
            del _writing[id(flow_run.id)]
            recorder.active -= 1
            if recorder.active == 0:
                recorder.idle_since = time.monotonic()  # its writer closes it in a moment


def _retire(recorder: Any) -> bool:
    """Called by an idle recorder's writer: True if it may close (no flow run took it up)."""
    with _lock:
        if recorder.active:
            return False
        path = recorder.path
        if _recorders.get(path) is recorder:
            del _recorders[path]
        return True


def _close_all() -> None:
    # At interpreter exit: write what is left and close the files, so none keeps its log.
    atexit.unregister(_close_all)
    with _lock:
        recorders = list(_recorders.values())
        _recorders.clear()
    for recorder in recorders:
        recorder.close()


def _report(message: str) -> None:
    # Once per process and problem (the run's name left out): not on every run of a loop.
    warn_once(logger, "%s", message, key=("history", message.split(": ", 1)[-1]))

