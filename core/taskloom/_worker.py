"""The worker side: running one task run, wherever a runner put it (the engine).

Everything a task run *means* happens here, in plain functions over plain data, so the same
code runs on a thread of the flow's process, in a spawned process, or on a Dask or Ray worker:
resolving inputs, the cache look-up, retries with their delays, the timeout, persisting the
result, the state changes, the task's own hooks. A runner ships a `TaskRunCall` and the results
of its upstream runs to a worker and calls `run_task_call` there; what comes back is a
`TaskRunOutcome`: the final state and, when the events could not be delivered live, the ordered
states and log records the driver replays.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from . import _execution, plugins
from ._calls import RunDefaults, TaskRunCall, _Upstream
from ._current import _flow_run_driver, _task_run_recorder
from ._events import TASK_RUN_LOGGER, TaskRunEvent, TaskRunOutcome, run_record
from ._walk import walk
from .context import TaskRun
from .states import AwaitingRetry, Crashed, Failed, Pending, State, StateType, TimedOut, _new_state

if TYPE_CHECKING:
    from .tasks import Task

__all__ = [
    "RunDefaults",
    "TaskRunCall",
    "TaskRunEvent",
    "TaskRunOutcome",
    "run_task_call",
]

class _EventRecorder:
    """The per-run sink of states and log records on the worker side."""

    __slots__ = (
        "attempts", "call", "emit", "events", "flow_run", "keep", "lock", "log_level", "nested", "seq",
        "started", "state", "task_run",
    )

    def __init__(
        self, call: TaskRunCall, emit: Callable[[TaskRunEvent], None] | None, keep: bool
    ) -> None:
        self.call = call
        self.task_run = call.task_run
        self.flow_run = call.flow_run
        self.emit = emit
        self.keep = keep or emit is None
        self.events: list[TaskRunEvent] = []
        self.seq = 0
        self.log_level = call.log_level
        self.state: State | None = None
        self.attempts = call.retries_used
        self.started: float | None = None
        #: The driver of the runs this run submits, once it submits one (`taskloom._nested`);
        #: its threads then add events too, so numbering them takes ``lock``.
        self.nested: Any = None
        self.lock: threading.Lock | None = None

    def current_task_run(self) -> TaskRun:
        """The run as its task sees it: which attempt, in which state, started when."""
        state = self.state
        if state is None or state.type is not StateType.RUNNING:
            return self.task_run
        started = datetime.fromtimestamp(self.started or state.timestamp, UTC)
        return attrs.evolve(
            self.task_run, run_count=self.attempts, state_name=state.name, start_time=started
        )

    def _push(self, event: TaskRunEvent) -> None:
        if self.keep:
            self.events.append(event)
        if self.emit is not None:
            self.emit(event)

    def forward(self, event: TaskRunEvent) -> None:
        """Add an event to this run's stream, numbered under the lock: once the run has
        submitted runs, their threads add events to it too (see taskloom._nested)."""
        assert self.lock is not None
        with self.lock:
            self.seq += 1
            self._push(event._replace(seq=self.seq))

    def set_state(self, new: State) -> None:
        if new.type is StateType.RUNNING:
            self.attempts += 1
            if self.started is None:
                self.started = new.timestamp
        old, self.state = self.state, new
        if self.lock is not None:
            self.forward(TaskRunEvent(0, old, new))
            return
        self.seq += 1
        # tuple.__new__: the named tuple's own __new__ is a Python function, twice a run;
        # and `_push` written out: one frame less, twice a run.
        event = _new_tuple(TaskRunEvent, (self.seq, old, new, None, None, None))
        if self.keep:
            self.events.append(event)
        if self.emit is not None:
            self.emit(event)

    def log(
        self,
        level: int,
        msg: str,
        *args: Any,
        exc_text: str | None = None,
        logger_name: str = TASK_RUN_LOGGER,
    ) -> None:
        if level < self.log_level:
            return
        task_run = self.task_run
        record = run_record(
            logger_name, level, msg % args if args else msg, task_run.name, task_run.id,
            task_run.flow_run_name, task_run.flow_run_id, exc_text,
        )
        if self.lock is not None:
            self.forward(TaskRunEvent(0, record=record))
            return
        self.seq += 1
        self._push(TaskRunEvent(self.seq, record=record))


_new_tuple = tuple.__new__

_HOST = os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "localhost")


_here = threading.local()


def _where() -> str:
    """Where this code runs, as ``host/pid/thread``: the row of a run in a timeline.

    Made once per thread, with the name the thread had then: building it (host name, pid,
    thread name) is a measurable share of a no-op task's cost, and every attempt asks.
    """
    try:
        return _here.worker  # type: ignore[no-any-return]
    except AttributeError:
        worker = _here.worker = f"{_HOST}/{os.getpid()}/{threading.current_thread().name}"
        return worker


def _forget_workers() -> None:
    global _here
    _here = threading.local()  # a forked child has another pid


os.register_at_fork(after_in_child=_forget_workers)


def _upstream_state(item: Any) -> State:
    """The final state of an upstream run, whatever form the runner delivered it in."""
    if isinstance(item, TaskRunOutcome):
        return item.state
    if isinstance(item, State):
        return item
    # A concurrent.futures-like handle in the same process (the thread runners).
    return _upstream_state(item.result())


def _substitute(value: Any, values: Sequence[Any]) -> Any:
    return walk(value, lambda v: values[v.index] if isinstance(v, _Upstream) else v)


def run_task_call(
    call: TaskRunCall,
    *upstream: Any,
    emit: Callable[[TaskRunEvent], None] | None = None,
    keep_events: bool = False,
) -> TaskRunOutcome:
    """Run one task run here and return its outcome; never raises for the task's own errors.

    ``upstream`` are the outcomes (or final states) of ``call.upstream``, in that order.
    ``emit``, when given, receives each event as it happens; otherwise the call's own ``emit``
    is used if it has one (same process), else events are returned in the outcome.

    A runner that streams events over a channel that may lag or drop (a pub/sub topic) passes
    ``emit`` *and* ``keep_events=True``: the outcome then carries every event too, and the
    driver drops the ones it already saw (events are numbered per run).
    """
    recorder = _EventRecorder(call, emit if emit is not None else call.emit, keep_events)
    token = _task_run_recorder.set(recorder)
    try:
        state = _run(call, recorder, upstream)
    finally:
        _task_run_recorder.reset(token)
        if recorder.nested is not None:
            recorder.nested.close()
    return _new_tuple(TaskRunOutcome, (state, tuple(recorder.events)))


_ENGINE_FILES = tuple(
    __file__.rsplit("_worker", 1)[0] + name for name in ("_worker", "tasks", "_execution")
)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the user's function down, without the engine's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.rsplit(".", 1)[0] in _ENGINE_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _inputs(call: TaskRunCall, recorder: _EventRecorder, upstream: Sequence[Any]) -> list[Any] | State:
    """Upstream values in order, or the NotReady state if one did not complete."""
    values: list[Any] = []
    allow = call.allow_failure
    for index, item in enumerate(upstream):
        state = _upstream_state(item)
        if state.type is StateType.COMPLETED:
            values.append(state.result())
        elif index < len(allow) and allow[index]:
            values.append(state.result(raise_on_failure=False))
        else:
            name = call.upstream_names[index] if index < len(call.upstream_names) else "?"
            return Pending(
                f"Upstream task run {name!r} did not reach a 'COMPLETED' state.", name="NotReady"
            )
    return values


def _run(call: TaskRunCall, recorder: _EventRecorder, upstream: Sequence[Any]) -> State:
    task = call.task
    values = _inputs(call, recorder, upstream) if upstream else []
    if isinstance(values, State):
        return _finish(call, recorder, values)
    parameters = _substitute(call.parameters, values) if upstream else call.parameters

    keeps = task._keeps_results  # `_execution.wants_results`, without its frame
    if keeps or (keeps is None and call.defaults.persist_result):
        results = _execution.ResultPlan.of(call, parameters)
    else:
        results = None
    if isinstance(results, State):  # a cache_key_fn that raised, an unknown storage
        return _finish(call, recorder, results)
    if results is not None:
        cached = results.lookup(recorder)
        if cached is not None:
            return _finish(call, recorder, cached)

    retries_left = task.retries - call.retries_used
    attempt = call.retries_used
    while True:
        recorder.set_state(
            _new_state(
                StateType.RUNNING,
                "Running" if attempt == 0 else "Retrying",
                worker=getattr(_here, "worker", None) or _where(),
            )
        )
        final = _attempt(call, recorder, parameters, results, retries_left <= 0 < task.retries)
        if final.type is StateType.COMPLETED or retries_left <= 0:
            break
        if not _should_retry(call, recorder, final):
            break
        delay = retry_delay(task, attempt)
        recorder.set_state(AwaitingRetry(f"Retry {attempt + 1} of {task.retries} in {delay:.3g}s."))
        recorder.log(
            logging.INFO,
            "Received non-final state 'AwaitingRetry' when proposing final state %r and will "
            "attempt to run again...",
            final.name,
        )
        if delay > 0:
            time.sleep(delay)
        attempt += 1
        retries_left -= 1
    return _finish(call, recorder, final)


def _attempt(
    call: TaskRunCall,
    recorder: _EventRecorder,
    parameters: dict[str, Any],
    results: _execution.ResultPlan | None,
    exhausted: bool = False,
) -> State:
    task = call.task
    # Prefect 3's words on the last of several attempts; the ERROR line names the exception.
    suffix = " - Retries are exhausted" if exhausted else ""
    try:
        data = _execution.execute(call, parameters, plugins.execution_hook())
    except _execution.TaskTimeout:
        # Runs it submitted are not waited for: the parent's end closes them (see _nested).
        message = f"Task run exceeded timeout of {task.timeout_seconds:g} second(s)"
        recorder.log(logging.ERROR, message + suffix)
        return TimedOut(message, exception=TimeoutError(f"{call.task_run.name}: {message}"))
    except Exception as exc:
        _wait_for_children(recorder)
        tb = _user_traceback(exc)
        recorder.log(logging.ERROR, "Encountered exception during execution: %r%s", exc, suffix, exc_text=tb)
        exc.__traceback__ = None  # frames do not pickle; the text above travels instead
        return Failed(
            f"Task run encountered an exception {type(exc).__name__}: {exc}",
            exception=exc,
            traceback=tb,
        )
    except SystemExit as exc:
        # sys.exit() in a task ends that run, not the worker or the flow's process: the same
        # on every runner (a Dask nanny would restart the worker, Ray would lose it).
        _wait_for_children(recorder)
        recorder.log(logging.ERROR, "The task called sys.exit():", exc_text=_user_traceback(exc))
        return Crashed(f"Task run crashed: SystemExit: {exc}")
    except KeyboardInterrupt as exc:
        if threading.current_thread() is threading.main_thread() and _flow_run_driver.get() is not None:
            # The flow's own main thread (the sequential runner): this may be Ctrl-C, which
            # must reach the flow run. Anywhere else the task raised it itself.
            recorder.log(logging.ERROR, "Task run was interrupted (KeyboardInterrupt).")
            raise
        _wait_for_children(recorder)
        recorder.log(logging.ERROR, "The task raised KeyboardInterrupt:", exc_text=_user_traceback(exc))
        return Crashed("Task run crashed: KeyboardInterrupt" + (f": {exc}" if str(exc) else ""))
    except BaseException as exc:
        recorder.log(logging.ERROR, "Task run was interrupted (%s).", type(exc).__name__)
        raise
    if recorder.nested is not None:  # `_wait_for_children`, on every run's path
        recorder.nested.wait_all()
    if isinstance(data, State):
        return _returned_state(call, data)
    if results is not None:
        return results.persist(recorder, data)
    return _new_state(StateType.COMPLETED, "Completed", data=data)


def _wait_for_children(recorder: _EventRecorder) -> None:
    """A run that submitted runs ends after them, as a flow run does: their last events are
    then in its stream before its own final state."""
    if recorder.nested is not None:
        recorder.nested.wait_all()


def _returned_state(call: TaskRunCall, state: State) -> State:
    """A task that returns a final `State` ends in it (a copy: the task's object stays its own)."""
    if not state.is_final():
        return Failed(
            f"Task run {call.task_run.name!r} returned the non-final state {state!r}; a task "
            "may return a final state only (Completed, Failed, Crashed or Cancelled)."
        )
    return attrs.evolve(state, timestamp=time.time(), run_id=None)


def _should_retry(call: TaskRunCall, recorder: _EventRecorder, state: State) -> bool:
    condition = call.task.retry_condition_fn
    if condition is None:
        return True
    try:
        return bool(condition(call.task, call.task_run, state))
    except Exception as exc:
        recorder.log(
            logging.ERROR,
            "retry_condition_fn raised %s: %s; the run is not retried.",
            type(exc).__name__,
            exc,
            exc_text=_user_traceback(exc),
        )
        return False


def retry_delay(task: Task[..., Any], attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1``, jitter included."""
    option = task.retry_delay_seconds
    if option is None:
        base = 0.0
    elif callable(option):
        delays = list(option(task.retries))
        base = float(delays[min(attempt, len(delays) - 1)]) if delays else 0.0
    elif isinstance(option, list):
        base = option[min(attempt, len(option) - 1)] if option else 0.0
    else:
        base = float(option)
    jitter = task.retry_jitter_factor
    if jitter:
        base = max(0.0, random.uniform(base * (1 - jitter), base * (1 + jitter)))
    return base


def _finish(call: TaskRunCall, recorder: _EventRecorder, final: State) -> State:
    recorder.set_state(final)
    level = logging.INFO if final.type is StateType.COMPLETED else logging.ERROR
    if level >= recorder.log_level:
        recorder.log(level, "Finished in state %r", final)
    task = call.task
    if task.on_completion or task.on_failure or task.on_crashed:
        _execution.run_state_hooks(call, recorder, final)
    return final

