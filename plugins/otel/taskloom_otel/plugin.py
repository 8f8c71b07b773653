"""Entry point of taskloom-otel: the flow-run hooks, which start the span tracker.

This module is imported in every process that loads taskloom's plugins, workers included,
so it imports nothing from OpenTelemetry: the tracker (and the API) load on the first flow
run that has a tracer provider to report to, and only then are the per-task-run hooks
(`taskloom_otel._task_hooks`) registered.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

from taskloom import hookimpl, plugins
from taskloom.plugins import warn_once

if TYPE_CHECKING:
    from taskloom.context import FlowRun
    from taskloom.runners import TaskRunner
    from taskloom.states import State

    from ._tracker import Tracker

TASKLOOM_PLUGIN_API = 1

_log = logging.getLogger("taskloom_otel")


class _State:
    tracker: Tracker | None = None
    report_key = object()  # what warn_once remembers: a new one lets a test see it again
    lock = threading.Lock()


def _report(hook: str, exc: BaseException) -> None:
    # Once per process: a broken exporter must not flood the run log, and never stop a run.
    warn_once(
        _log,
        "taskloom-otel stopped recording a span in %s (%s: %s); runs are unaffected, "
        "so please report this with the traceback at DEBUG level.",
        hook, type(exc).__name__, exc,
        key=_State.report_key, exc_info=_log.isEnabledFor(logging.DEBUG),
    )


def _may_have_provider() -> bool:
    # A provider is set through opentelemetry.trace (so it is imported already) or named by
    # OTEL_PYTHON_TRACER_PROVIDER; otherwise skip even importing the API.
    return "opentelemetry.trace" in sys.modules or "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _register_task_hooks() -> None:
    # Called before the flow run's driver is built, which is when it looks the hooks up.
    from . import _task_hooks

    manager = plugins.get_plugin_manager()
    # Always under the lock: pluggy names a plugin registered before its hooks are attached,
    # so a check outside it could let another flow run build its driver without them.
    with _State.lock:
        if not manager.has_plugin(_task_hooks.NAME):
            plugins.register(_task_hooks, name=_task_hooks.NAME)


@hookimpl
def taskloom_flow_run_started(flow_run: FlowRun, task_runner: TaskRunner) -> None:
    try:
        tracker = _State.tracker
        if tracker is None:
            if not _may_have_provider():
                return
            from ._tracker import Tracker

            with _State.lock:
                tracker = _State.tracker = _State.tracker or Tracker()
        runner = str(getattr(task_runner, "name", type(task_runner).__name__))
        if tracker.flow_started(flow_run, runner):
            _register_task_hooks()
    except Exception as exc:
        _report("taskloom_flow_run_started", exc)


@hookimpl
def taskloom_flow_run_finished(flow_run: FlowRun, state: State) -> None:
    tracker = _State.tracker
    if tracker is None:
        return
    try:
        tracker.flow_finished(flow_run, state)
    except Exception as exc:
        _report("taskloom_flow_run_finished", exc)
