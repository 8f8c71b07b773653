"""Tasks that submit tasks, on a worker whose flow's driver is in another process.

A task run that calls ``.submit()`` or ``.map()`` where no flow body runs (a spawned process,
a Dask or Ray worker: any runner that does not carry the flow's context to its workers) gets
a `_NestedDriver`: the flow run's driver, bound to that task run. It creates, names and runs
the child runs here, in threads of the worker's process, through the same engine; and what the
flow's process must see of them (their creation, state changes and log lines) it adds to the
*parent's* event stream, which every runner already brings back to the flow's process, live or
in the outcome. There the flow run's driver calls the hooks and counts the children as it does
for runs it submits itself. The parent ends after its children, as a flow run does.

Nothing here is runner-specific: a runner that moves calls and outcomes supports it as is.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from concurrent.futures import Future
from typing import Any

import attrs

from ._calls import TaskRunCall
from ._current import _task_run_recorder
from ._driver import _FlowRunDriver
from ._events import FLOW_RUN_LOGGER, TASK_RUN_LOGGER, TaskRunEvent, run_record
from ._walk import _ATOMIC
from ._worker import run_task_call
from .context import TaskRun
from .futures import TaskRunFuture
from .runners import Capability, TaskRunner, upstream_handles
from .states import _NO_DATA, State

__all__ = ["nested_driver"]

_creating = threading.Lock()


def nested_driver() -> _NestedDriver | None:
    """The driver for runs submitted inside the task run executing here, or None outside one."""
    recorder = _task_run_recorder.get()
    if recorder is None:
        return None
    driver = recorder.nested
    if driver is None:
        with _creating:
            driver = recorder.nested
            if driver is None:
                recorder.lock = threading.Lock()  # child threads add events from now on
                driver = recorder.nested = _NestedDriver(recorder)
    return driver  # type: ignore[no-any-return]


class _Run(Future[Any]):
    """A child run that whoever comes first executes: a pool thread, or a run that waits for
    it (`run_here`), so a bounded pool whose threads all wait cannot deadlock."""

    def __init__(self, call: TaskRunCall, handles: list[Any], context: contextvars.Context) -> None:
        super().__init__()
        self._claim = threading.Lock()
        self._work: tuple[TaskRunCall, list[Any], contextvars.Context] | None = (call, handles, context)

    def run_here(self) -> None:
        if not self._claim.acquire(blocking=False):
            return
        assert self._work is not None
        call, handles, context = self._work
        self._work = None  # the call refers back to its future: no cycle kept
        if not self.set_running_or_notify_cancel():
            return
        try:
            self.set_result(context.run(run_task_call, call, *handles))
        except BaseException as exc:
            self.set_exception(exc)


class _WorkerThreads(TaskRunner):
    """Child runs on threads of this process, in submission order (an upstream run is always
    taken before the runs that wait for it)."""

    name = "threads of the parent's worker"
    concurrency = "concurrent"
    capabilities = Capability.LIVE_EVENTS | Capability.RUN_WAITING_INLINE

    def __init__(self) -> None:
        self._max = min(32, (os.cpu_count() or 1) + 4)  # concurrent.futures' default
        self._threads: list[threading.Thread] = []
        self._queue: list[_Run | None] = []
        self._ready = threading.Condition()
        self._idle = 0

    def submit(self, call: TaskRunCall) -> _Run:
        handles = upstream_handles(call, lambda native: isinstance(native, _Run))
        run = _Run(call, handles, contextvars.copy_context())
        with self._ready:
            self._queue.append(run)
            if self._idle:
                self._ready.notify()
            elif len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"taskloom-child-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return run

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._idle += 1
                    self._ready.wait()
                    self._idle -= 1
                run = self._queue.pop(0)
            if run is None:
                return
            run.run_here()
            del run

    def close(self) -> None:
        with self._ready:
            self._queue.extend([None] * len(self._threads))
            self._ready.notify_all()


class _NestedDriver(_FlowRunDriver):
    """The flow run's driver for the runs one task run submits on its worker.

    Everything that the flow run's driver would do in the flow's process (log lines, hook
    calls) becomes an event in the parent's stream; the rest (names, inputs, retries of a
    crash, waiting) is the driver's own code.
    """

    def __init__(self, recorder: Any) -> None:
        call: TaskRunCall = recorder.call
        flow_run = call.flow_run
        # The children run on threads: the engine times them out itself.
        defaults = call.defaults._replace(runner_timeouts=False)
        super().__init__(flow_run, _WorkerThreads(), call.log_level, defaults, {})
        self._parent = recorder
        self.created_hook = self._created
        self.state_hook = self._changed

    def close(self) -> None:
        self.runner.close()  # type: ignore[attr-defined]

    # -- what the flow's process must see, as events of the parent ---------------------------

    def _created(self, task_run: TaskRun, parameters: dict[str, Any]) -> None:
        self._parent.forward(TaskRunEvent(0, run=task_run, parameters=_sendable(parameters)))

    def _changed(self, task_run: TaskRun, old: State | None, new: State) -> None:
        if new.data is not _NO_DATA:
            new = attrs.evolve(new, data=_NO_DATA)  # the result stays with the parent
        self._parent.forward(TaskRunEvent(0, new=new, run=task_run))

    def _log_flow(self, message: str) -> None:
        flow_run = self.flow_run
        record = run_record(FLOW_RUN_LOGGER, logging.INFO, message, None, None, flow_run.name, self._flow_run_id)
        self._parent.forward(TaskRunEvent(0, record=record))

    def log_task(self, task_run: TaskRun, level: int, message: str) -> None:
        if level >= self.log_level:
            flow_run = self.flow_run
            record = run_record(TASK_RUN_LOGGER, level, message, task_run.name, task_run.id, flow_run.name, self._flow_run_id)
            self._parent.forward(TaskRunEvent(0, record=record))

    def pass_on(self, future: TaskRunFuture[Any], event: TaskRunEvent) -> None:
        self._parent.forward(event)  # its log line, or an event of a run it submitted


def _sendable(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters for the created hook in the flow's process: values that cannot travel
    there (futures of this worker, locks...) as their repr."""
    from ._wire import dumps

    sendable = {}
    for name, value in parameters.items():
        if type(value) not in _ATOMIC:
            try:
                dumps(value)
            except Exception:
                value = repr(value)
        sendable[name] = value
    return sendable
