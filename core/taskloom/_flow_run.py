"""A flow run in the flow's process (the *driver*).

It resolves settings and the runner before any task runs, creates task runs, hands them to
the runner, replays the states and logs that come back, calls the lifecycle hooks in order,
and computes the final state by Prefect's rule. Imported on the first flow run, not at
``import taskloom``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import plugins
from ._ctx import _flow_run_driver
from ._names import run_name
from .config import load_settings
from .context import FlowRun, TaskRun
from .engine import (
    FLOW_RUN_LOGGER,
    TASK_RUN_LOGGER,
    TaskRunCall,
    TaskRunEvent,
    TaskRunOutcome,
    _Upstream,
    run_task_call,
)
from .futures import TaskFuture, TaskRunFuture
from .logging import setup_logging
from .runners import CompletedNative, resolve_task_runner
from .states import Cancelled, Completed, Crashed, Failed, Pending, State, StateType
from .tasks import Task, unmapped

if TYPE_CHECKING:
    from .flows import Flow
    from .runners import TaskRunner

__all__ = ["run_flow"]

engine_logger = logging.getLogger("taskloom.engine")

_ids = random.Random(os.urandom(32))


def _new_id() -> uuid.UUID:
    # A version-4 UUID from a generator seeded once from the OS: half the cost of uuid4().
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


_ATOMIC = frozenset({str, bytes, int, float, bool, type(None)})


def _collect_upstream(value: Any, found: dict[int, tuple[int, TaskFuture[Any]]]) -> Any:
    """Replace futures in ``value`` (recursively) by placeholders, numbering them in ``found``."""
    if isinstance(value, TaskRunFuture):
        slot = found.get(id(value))
        if slot is None:
            slot = found[id(value)] = (len(found), value)
        return _Upstream(slot[0])
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, list):
        return [_collect_upstream(v, found) for v in value]
    if isinstance(value, tuple):
        items = [_collect_upstream(v, found) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: _collect_upstream(v, found) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(_collect_upstream(v, found) for v in value)
    return value


class _FlowRunDriver:
    """The flow run in the flow's process: task-run bookkeeping, events and hooks."""

    def __init__(self, flow_run: FlowRun, runner: TaskRunner, log_level: int) -> None:
        self.flow_run = flow_run
        self.runner = runner
        self.log_level = log_level
        self.logger = logging.LoggerAdapter(
            logging.getLogger(FLOW_RUN_LOGGER),
            {"flow_run_name": flow_run.name, "flow_run_id": str(flow_run.id)},
        )
        self._light_flow_run = FlowRun(flow_run.id, flow_run.name, flow_run.flow_name)
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._pending: set[TaskRunFuture[Any]] = set()
        self._completed = 0  # kept apart: hashing an Enum member costs a Python call
        self._final_counts: Counter[StateType] = Counter()
        self._first_failure: TaskRunFuture[Any] | None = None
        self._created_hook = plugins.observed("taskloom_task_run_created")
        self._state_hook = plugins.observed("taskloom_task_run_state_changed")

    # -- creating and handing over task runs -----------------------------------------------

    def _prepare(
        self, task: Task[..., Any], parameters: dict[str, Any]
    ) -> tuple[TaskRunCall, TaskRunFuture[Any]]:
        future: TaskRunFuture[Any] = TaskRunFuture(None, self._on_event, self._on_final)  # type: ignore[arg-type]
        with self._lock:
            n = self._counters[task.task_key]
            self._counters[task.task_key] = n + 1
            self._pending.add(future)
        flow_run = self.flow_run
        task_run = future.task_run = TaskRun(
            _new_id(),
            f"{task.task_key}-{n}",
            task.name,
            task.task_key,
            flow_run.id,
            flow_run.name,
            task.tags,
            task.runner_options,
        )
        upstream: tuple[TaskRunFuture[Any], ...] = ()
        names: tuple[str, ...] = ()
        for value in parameters.values():
            if type(value) not in _ATOMIC:
                found: dict[int, tuple[int, TaskFuture[Any]]] = {}
                parameters = _collect_upstream(parameters, found)
                if found:
                    upstream = tuple(f for _, f in found.values())  # type: ignore[misc]
                    names = tuple(f.task_run.name for f in upstream)
                break
        call = TaskRunCall(
            task_run, self._light_flow_run, task, parameters, upstream, names,
            self.log_level, future._emit,
        )
        if self.log_level <= logging.INFO:
            self.logger.info("Created task run %r for task %r", task_run.name, task.name)
        if self._created_hook is not None:
            self._created_hook(task_run=task_run)
        if self._state_hook is not None:
            with self._lock:
                future._state = Pending()
                self._state_hook(task_run=task_run, old=None, new=future._state)
        return call, future

    def _hand_over(self, call: TaskRunCall, future: TaskRunFuture[Any], native: Any) -> None:
        try:
            future._attach(native)
        except Exception as exc:  # pragma: no cover - a runner returning a non-future
            self._submit_failed(call, future, exc)

    def _submit_failed(self, call: TaskRunCall, future: TaskRunFuture[Any], exc: Exception) -> None:
        message = (
            f"Task run {call.task_run.name!r} could not be handed to runner "
            f"{getattr(self.runner, 'name', self.runner)!r}: {exc}"
        )
        failed = Failed(message, exception=exc)
        future._attach(CompletedNative(TaskRunOutcome(failed, (TaskRunEvent(1, None, failed),))))
        self._log_task(call.task_run, logging.ERROR, message)

    def _announce(self, name: str) -> None:
        if self.log_level > logging.INFO:
            return
        if self.runner.concurrency == "sequential":
            self.logger.info("Executing %r immediately...", name)
        else:
            self.logger.info("Submitted task run %r for execution.", name)

    def submit(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskRunFuture[Any]:
        call, future = self._prepare(task, task.bind(args, kwargs))
        self._announce(call.task_run.name)
        try:
            native = self.runner.submit(call)
        except Exception as exc:
            self._submit_failed(call, future, exc)
        else:
            self._hand_over(call, future, native)
        return future

    def map(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[TaskRunFuture[Any]]:
        parameters = task.bind(args, kwargs)
        iterables = {
            k: list(v)
            for k, v in parameters.items()
            if not isinstance(v, (unmapped, str, bytes, dict)) and isinstance(v, Iterable)
        }
        if not iterables:
            raise TypeError(
                f"Task {task.name!r} was mapped without any iterable argument: give at least "
                "one list (wrap arguments every run shares in unmapped(...))."
            )
        lengths = {k: len(v) for k, v in iterables.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"Task {task.name!r} was mapped over iterables of different lengths: {lengths}."
            )
        static = {k: (v.value if isinstance(v, unmapped) else v) for k, v in parameters.items() if k not in iterables}
        count = next(iter(lengths.values()))
        prepared = [
            self._prepare(task, {**static, **{k: v[i] for k, v in iterables.items()}}) for i in range(count)
        ]
        for call, _ in prepared:
            self._announce(call.task_run.name)
        calls = [call for call, _ in prepared]
        try:
            natives = self.runner.map(calls)
        except Exception as exc:
            for call, future in prepared:
                self._submit_failed(call, future, exc)
        else:
            for (call, future), native in zip(prepared, natives, strict=True):
                self._hand_over(call, future, native)
        return [future for _, future in prepared]

    def call(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool) -> Any:
        """A task called directly in a flow: a task run executed here, now."""
        call, future = self._prepare(task, task.bind(args, kwargs))
        if self.log_level <= logging.INFO:
            self.logger.info("Executing %r immediately...", call.task_run.name)
        future._attach(CompletedNative(run_task_call(call)))
        if return_state:
            return future.state
        return future.result()

    # -- what comes back -----------------------------------------------------------------

    def _on_event(self, future: TaskRunFuture[Any], event: TaskRunEvent) -> None:
        with self._lock:
            if event.seq > 0:
                # Only the next event in order: a repeat was seen live already, and one
                # after a gap waits for the outcome, which replays every event in order.
                if event.seq != future._seq + 1:
                    return
                future._seq = event.seq
            if event.record is not None:
                logging.getLogger(event.record.name).handle(event.record)
                return
            assert event.new is not None
            old, future._state = future._state, event.new
            if self._state_hook is not None:
                self._state_hook(task_run=future.task_run, old=old, new=event.new)

    def _on_final(self, future: TaskRunFuture[Any]) -> None:
        state = future.state
        with self._lock:
            self._pending.discard(future)
            if state.type is StateType.COMPLETED:
                self._completed += 1
            else:
                self._final_counts[state.type] += 1
            if self._first_failure is None and (state.is_failed() or state.is_crashed()):
                self._first_failure = future
        if state.is_crashed():
            self._log_task(future.task_run, logging.ERROR, f"Finished in state {state!r}")

    def _log_task(self, task_run: TaskRun, level: int, message: str) -> None:
        if level < self.log_level:
            return
        record = logging.LogRecord(TASK_RUN_LOGGER, level, "", 0, message, None, None)
        record.task_run_name = task_run.name
        record.task_run_id = str(task_run.id)
        record.flow_run_name = self.flow_run.name
        record.flow_run_id = str(self.flow_run.id)
        logging.getLogger(TASK_RUN_LOGGER).handle(record)

    def wait_all(self) -> None:
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.wait()

    # -- the flow run's final state --------------------------------------------------------

    def final_state(self, value: Any, error: BaseException | None) -> State:
        if error is not None:
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            return Failed(
                f"Flow run encountered an exception. {type(error).__name__}: {error}",
                exception=error,
                traceback=tb,
            )
        if value is None:
            first = self._first_failure
            failure: tuple[str | None, State] | None = (
                (first.task_run.name, first.state) if first is not None else None
            )
            counts = dict(self._final_counts)
            if self._completed:
                counts[StateType.COMPLETED] = self._completed
            return _aggregate(counts, failure)
        states = _returned_states(value)
        if states is None:
            return Completed(data=value)
        returned: Counter[StateType] = Counter(s.type for _, s in states)
        failure = next(
            ((name, s) for name, s in states if s.is_failed() or s.is_crashed()),
            next(((name, s) for name, s in states if not s.is_final()), None),
        )
        state = _aggregate(dict(returned), failure)
        if state.is_completed():
            return Completed(state.message, data=_resolve_returned(value))
        return state


def _aggregate(counts: dict[StateType, int], failure: tuple[str | None, State] | None) -> State:
    """Prefect's rule for many states: any failed fails, then cancelled, then not final."""
    total = sum(counts.values())
    failed = counts.get(StateType.FAILED, 0) + counts.get(StateType.CRASHED, 0)
    if failed:
        detail, exception = "", None
        if failure is not None:
            name, failed_state = failure
            run = f"task run {name!r}" if name else "a returned state"
            detail = f"\nFirst failure, {run}: {failed_state.message}"
            if failed_state.traceback:
                detail += "\n" + failed_state.traceback.rstrip()
            exception = failed_state.exception
        return Failed(f"{failed}/{total} states failed.{detail}", exception=exception)
    cancelled = counts.get(StateType.CANCELLED, 0)
    if cancelled:
        return Cancelled(f"{cancelled}/{total} states cancelled.")
    not_final = counts.get(StateType.PENDING, 0) + counts.get(StateType.RUNNING, 0)
    if not_final:
        exception = failure[1]._exception_to_raise() if failure is not None else None
        return Failed(f"{not_final}/{total} states are not final.", exception=exception)
    return Completed("All states completed.")


def _returned_states(value: Any) -> list[tuple[str | None, State]] | None:
    """The states a flow's return value stands for, or None if it is a plain value."""
    items = list(value) if isinstance(value, (list, tuple, set)) else [value]
    states: list[tuple[str | None, State]] = []
    for item in items:
        if isinstance(item, State):
            states.append((None, item))
        elif isinstance(item, TaskRunFuture):
            item.wait()
            states.append((item.task_run.name, item.state))
        else:
            return None
    return states


def _resolve_returned(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return type(value)(_resolve_returned(v) for v in value)
    if isinstance(value, State):
        return value.result()
    if isinstance(value, TaskRunFuture):
        return value.result()
    return value


def run_flow(flow: Flow[..., Any], parameters: dict[str, Any], return_state: bool) -> Any:
    """One flow run of ``flow``: settings and runner first, then the body, then the final state."""
    settings = load_settings()
    log_level = setup_logging(settings)
    runner = resolve_task_runner(flow.task_runner, settings)
    flow_run = FlowRun(uuid.uuid4(), run_name(), flow.name, parameters)
    engine_logger.info("Created flow run %r for flow %r", flow_run.name, flow.name)
    if flow.task_runner is not None and settings.sources.get("task_runner") == "cli":
        engine_logger.warning(
            "Flow %r names its task runner in code; --runner %s is ignored.",
            flow.name,
            settings["task_runner"],
        )
    hook = plugins.get_plugin_manager().hook
    hook.taskloom_flow_run_started(flow_run=flow_run)
    driver = _FlowRunDriver(flow_run, runner, log_level)
    state = _run_body(flow, driver, parameters)
    driver.logger.info("Finished in state %r", state)
    hook.taskloom_flow_run_finished(flow_run=flow_run, state=state)
    if return_state:
        return state
    return state.result()


def _run_body(flow: Flow[..., Any], driver: _FlowRunDriver, parameters: dict[str, Any]) -> State:
    runner = driver.runner
    try:
        runner.__enter__()
    except Exception as exc:
        name = getattr(runner, "name", runner)
        return Crashed(
            f"Task runner {name!r} failed to start: {type(exc).__name__}: {exc}", exception=exc
        )
    token = _flow_run_driver.set(driver)
    value: Any = None
    error: BaseException | None = None
    try:
        try:
            value = flow._invoke(parameters)
        except Exception as exc:
            error = exc
        driver.wait_all()
    except BaseException as exc:
        runner.__exit__(type(exc), exc, exc.__traceback__)
        raise
    finally:
        _flow_run_driver.reset(token)
    runner.__exit__(None, None, None)
    if error is not None:
        driver.logger.error(
            "Encountered exception during execution:",
            exc_info=(type(error), error, error.__traceback__),
        )
    return driver.final_state(value, error)
