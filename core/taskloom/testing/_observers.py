"""What the conformance cases observe: lifecycle hook calls and log records, as a user's
plugin and handler would see them, and what the runner under test declares."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import taskloom
from taskloom import plugins

__all__: list[str] = []


class _HookRecorder:
    """A plugin object that records lifecycle hook calls, with the process that made them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states: dict[str, list[tuple[str | None, str]]] = {}
        self.created: list[str] = []
        self.flow_runs: list[tuple[str, str]] = []
        self.pids: set[int] = set()
        self.parameters: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, list[str | None]] = {}
        self.runners: list[Any] = []
        self.flow_run_ids: list[Any] = []
        self.in_flow_run: dict[str, Any] = {}

    @taskloom.hookimpl
    def taskloom_flow_run_started(self, flow_run: Any, task_runner: Any) -> None:
        self.runners.append(task_runner)
        self.flow_run_ids.append(flow_run.id)

    @taskloom.hookimpl
    def taskloom_task_run_created(self, task_run: Any, parameters: Any) -> None:
        with self.lock:
            self.created.append(task_run.name)
            self.in_flow_run[task_run.name] = task_run.flow_run_id
            self.parameters[task_run.name] = dict(parameters)
            self.pids.add(os.getpid())

    @taskloom.hookimpl
    def taskloom_task_run_state_changed(self, task_run: Any, old: Any, new: Any) -> None:
        with self.lock:
            self.states.setdefault(task_run.name, []).append(
                (old.name if old is not None else None, new.name)
            )
            if new.is_running():
                self.workers.setdefault(task_run.name, []).append(new.worker)
            self.pids.add(os.getpid())

    @taskloom.hookimpl
    def taskloom_flow_run_finished(self, flow_run: Any, state: Any) -> None:
        self.flow_runs.append((flow_run.name, state.name))


def _class_attribute(instance: Any, name: str) -> Any:
    """``name`` as set on the class: a function there (``runner = lambda: ...``) stays a plain
    function, not a method bound to the test instance."""
    value = inspect.getattr_static(instance, name)
    if isinstance(value, (staticmethod, classmethod)):
        return getattr(instance, name)
    if inspect.isfunction(value) and inspect.signature(value).parameters:
        return getattr(instance, name)  # a method, ``def runner(self): ...``
    return value


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _concurrency(runner: Any) -> str:
    """How the runner under test runs task runs: "sequential", "concurrent" or "parallel"."""
    if isinstance(runner, str):
        return str(getattr(plugins.lookup("task_runner", runner).load(), "concurrency", ""))
    return str(getattr(runner, "concurrency", "concurrent"))


@contextlib.contextmanager
def _captured() -> Iterator[_Capture]:
    """The records that reach the ``taskloom`` logger meanwhile."""
    capture = _Capture()
    logger = logging.getLogger("taskloom")
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
