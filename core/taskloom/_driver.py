"""The flow run's bookkeeping in the flow's process: task runs in, events and states back.

`_FlowRunDriver` creates task runs (names, tags, inputs), holds back runs whose tag has no free
concurrency slot, hands the rest to the runner, replays the events that come back in order,
calls the lifecycle hooks, retries crashed runs that have retries left, and counts final states
for the flow's own final state.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _run_endings, plugins
from ._annotations import _tags
from ._arguments import Inputs, map_parameters
from ._calls import RunDefaults, TaskRunCall
from ._child_runs import ChildRuns
from ._current import _task_run_recorder
from ._events import FLOW_RUN_LOGGER, TASK_RUN_LOGGER, TaskRunEvent, TaskRunOutcome, run_record
from ._limits import Limits
from ._names import from_template, new_id
from ._walk import _ATOMIC
from ._wire import loads, lost_run_outcome
from ._worker import run_task_call
from .context import FlowRun, TaskRun, _new_task_run
from .futures import TaskFutureList, TaskRunFuture
from .runners import Capability, CompletedNative
from .states import Failed, State, StateType
from .tasks import Task

if TYPE_CHECKING:
    from ._placement import ResultPlacement
    from .runners import TaskRunner

__all__ = ["_FlowRunDriver"]

class _FlowRunDriver:
    """The flow run in the flow's process: task-run bookkeeping, events and hooks."""

    def __init__(
        self,
        flow_run: FlowRun,
        runner: TaskRunner,
        log_level: int,
        defaults: RunDefaults,
        concurrency_limits: dict[str, int],
    ) -> None:
        self.flow_run = flow_run
        self.runner = runner
        self.log_level = log_level
        self.defaults = defaults
        #: The flow run's logger (get_run_logger() in the flow's body); the per-task lines
        #: go through `_log_flow`, which skips the standard library's caller lookup.
        self.logger = logging.LoggerAdapter(
            logging.getLogger(FLOW_RUN_LOGGER),
            {"flow_run_name": flow_run.name, "flow_run_id": str(flow_run.id)},
        )
        self._flow_logger = self.logger.logger
        self._task_logger = logging.getLogger(TASK_RUN_LOGGER)
        self._flow_run_id = str(flow_run.id)  # made once: each line of the run carries it
        self.lock = threading.RLock()
        self._forgotten = threading.Condition(self.lock)  # notified as a run leaves _pending
        self._waiting_all = 0  # threads in wait_all, waiting on _forgotten
        #: The next number of each task's runs; ``next`` on a count needs no lock.
        self._counters: dict[str, Iterator[int]] = {}
        self._pending: set[TaskRunFuture[Any]] = set()
        self._completed = 0  # kept apart: hashing an Enum member costs a Python call
        self._final_counts: Counter[StateType] = Counter()
        self._first_failure: tuple[str, State] | None = None
        self.limits = Limits(concurrency_limits) if concurrency_limits else None
        self.created_hook = plugins.observed("taskloom_task_run_created")
        self.state_hook = plugins.observed("taskloom_task_run_state_changed")
        self.cancelled = False
        capabilities = runner.capabilities
        self._live = bool(capabilities & Capability.LIVE_EVENTS)
        self._cancels = bool(capabilities & Capability.CANCEL)
        #: Read by futures: a task run waiting on a queued run of this runner runs it.
        self.runs_waiting_inline = bool(capabilities & Capability.RUN_WAITING_INLINE)
        # (retries, delay) for tasks that set neither, from the flow run's settings.
        self.retry_defaults = defaults.retry_defaults  # None: no defaults set
        self._defaulted: dict[int, Task[..., Any]] = {}
        #: Set for a runner with remote workers: checks where runs keep their results.
        self.placement: ResultPlacement | None = None
        #: Runs that task runs submitted on their workers; their events come in their
        #: parent's stream.
        self.children = ChildRuns(self)

    # -- creating task runs ------------------------------------------------------------------

    def _prepare(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        here: bool = False,
    ) -> tuple[TaskRunCall, TaskRunFuture[Any]]:
        if self.retry_defaults is not None:
            task = self._with_retry_defaults(task, self.retry_defaults)
        future: TaskRunFuture[Any] = TaskRunFuture(None, self)  # type: ignore[arg-type]
        flow_run = self.flow_run
        counter = task.task_key
        parent = _task_run_recorder.get()
        if parent is not None and parent.flow_run.id != flow_run.id:
            parent = None  # a task run of a parent flow run: this is a subflow's run
        if parent is not None:
            # Submitted inside a task run: named and numbered after it, the same whether
            # it was created here or by the task run's worker (see taskloom._nested).
            counter = f"{parent.task_run.name}/{task.task_key}"
        numbers = self._counters.get(counter)
        if numbers is None:
            numbers = self._counters.setdefault(counter, itertools.count())
        n = next(numbers)
        context_tags = _tags.get()
        template = task.task_run_name
        if template is not None:
            name = from_template(template, parameters, f"Task {task.name!r}", "task_run_name")
        elif parent is not None:
            name = f"{parent.task_run.name}/{task.task_key}-{n}"
        else:
            name = f"{task.task_key}-{n}"
        task_run = future.task_run = _new_task_run(
            new_id(),
            name,
            task.name,
            task.task_key,
            flow_run.id,
            flow_run.name,
            task.tags | context_tags if context_tags else task.tags,
            task._runner_options_for(self.runner) if task._runner_options_by_runner else task.runner_options,
        )
        upstream: tuple[TaskRunFuture[Any], ...] = ()
        names: tuple[str, ...] = ()
        allow: tuple[bool, ...] = ()
        needs_walk = wait_for is not None or not _ATOMIC.issuperset(map(type, parameters.values()))
        given = parameters
        if needs_walk:
            inputs = Inputs()
            parameters = inputs.collect(parameters)
            for item in wait_for or ():
                inputs.collect(item)
            if inputs.futures:
                upstream = tuple(inputs.futures)
                names = tuple(f.task_run.name for f in upstream)
                allow = tuple(inputs.allow)
        call = TaskRunCall(
            task_run, self.flow_run, task, parameters, upstream, names,
            self.log_level, future._emit if here or self._live else None, allow, self.defaults,
        )
        # Only now: a run whose arguments or name could not be made (it raised above) is
        # not one the flow run waits for.
        with self.lock:
            self._pending.add(future)
        if self.log_level <= logging.INFO:
            self._log_flow(f"Created task run {task_run.name!r} for task {task.name!r}")
        # A run handed over later (a freed tag slot, a crash retry) is submitted from
        # another thread; it must still see the submitter's context (remote_options...).
        future._begin(call, contextvars.copy_context() if self.limits is not None or task.retries else None, given)
        return call, future

    def _with_retry_defaults(self, task: Task[..., Any], defaults: tuple[int, float]) -> Task[..., Any]:
        """``task`` with the default retries and delay where it gives none (one copy per run)."""
        options = task.options
        retries, delay = defaults
        changes: dict[str, Any] = {}
        if options.retries is None and retries:
            changes["retries"] = retries
        if options.retry_delay_seconds is None and delay:
            changes["retry_delay_seconds"] = delay
        if not changes:
            return task
        with self.lock:
            copy = self._defaulted.get(id(task))
            if copy is None:
                copy = self._defaulted[id(task)] = task.with_options(**changes)
        return copy

    # -- handing them to the runner --------------------------------------------------------

    def _announce(self, name: str) -> None:
        if self.log_level > logging.INFO:
            return
        if self.runner.concurrency == "sequential":
            self._log_flow(f"Executing {name!r} immediately...")
        else:
            self._log_flow(f"Submitted task run {name!r} for execution.")

    def _admit(self, call: TaskRunCall, future: TaskRunFuture[Any]) -> bool:
        """Take the run's tag slots, or queue it until they are free; False if it waits."""
        if self.limits is None:
            return True
        tags = self.limits.limited(call.task_run.tags)
        if not tags:
            return True
        zero = [tag for tag in tags if self.limits.limits[tag] == 0]
        if zero:
            message = f"Concurrency limit of tag {zero[0]!r} is 0: task runs with this tag cannot run."
            future._attach(CompletedNative(TaskRunOutcome(Failed(message), (TaskRunEvent(1, None, Failed(message)),))))
            return False
        with self.lock:
            if self.limits.try_take(tags):
                return True
            self.limits.waiting.append((call, future))
        return False

    def _hand_over(self, call: TaskRunCall, future: TaskRunFuture[Any]) -> None:
        try:
            context = future._context
            native = self.runner.submit(call) if context is None else context.run(self.runner.submit, call)
        except Exception as exc:
            self._submit_failed(call, future, exc)
        else:
            future._attach(native)

    def _submit_failed(self, call: TaskRunCall, future: TaskRunFuture[Any], exc: Exception) -> None:
        message = (
            f"Task run {call.task_run.name!r} could not be handed to runner "
            f"{self.runner.name!r}: {exc}"
        )
        failed = Failed(message, exception=exc)
        self.log_task(call.task_run, logging.ERROR, message)
        future._attach(CompletedNative(TaskRunOutcome(failed, (TaskRunEvent(1, None, failed),))))

    def submit(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> TaskRunFuture[Any]:
        call, future = self._prepare(task, task.bind(args, kwargs), wait_for)
        if self.placement is not None:
            self.placement.check(call)
        if self.log_level <= logging.INFO:
            self._announce(call.task_run.name)
        if self.limits is None or self._admit(call, future):
            self._hand_over(call, future)
        return future

    def map(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> TaskFutureList[Any]:
        runs = map_parameters(task, args, kwargs)
        wait_for = list(wait_for) if wait_for is not None else None
        prepared = [self._prepare(task, parameters, wait_for) for parameters in runs]
        if self.placement is not None and prepared:
            self.placement.check(prepared[0][0])
        admitted = []
        for call, future in prepared:
            self._announce(call.task_run.name)
            if self._admit(call, future):
                admitted.append((call, future))
        try:
            natives = self.runner.map([call for call, _ in admitted])
        except Exception as exc:
            for call, future in admitted:
                self._submit_failed(call, future, exc)
        else:
            for (_, future), native in zip(admitted, natives, strict=True):
                future._attach(native)
        return TaskFutureList(future for _, future in prepared)

    def call(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        return_state: bool,
        wait_for: Iterable[Any] | None = None,
    ) -> Any:
        """A task called directly in a flow: a task run executed here, now."""
        call, future = self._prepare(task, task.bind(args, kwargs), wait_for, here=True)
        if self.log_level <= logging.INFO:
            self._log_flow(f"Executing {call.task_run.name!r} immediately...")
        if call.upstream:
            for upstream in call.upstream:
                upstream.wait()
            handles = [upstream.state for upstream in call.upstream]
        else:
            handles = []
        future._attach(CompletedNative(run_task_call(call, *handles)))
        if return_state:
            return future.state
        return future.result()

    async def call_async(
        self,
        task: Task[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        return_state: bool,
        wait_for: Iterable[Any] | None = None,
    ) -> Any:
        """An async task awaited in an async flow: run on a thread, the event loop stays free."""
        import asyncio

        return await asyncio.to_thread(self.call, task, args, kwargs, return_state, wait_for)

    # -- what comes back -----------------------------------------------------------------

    def pass_on(self, future: TaskRunFuture[Any], event: TaskRunEvent) -> None:
        """An event of a run that is not its own state: a log line, or a child run's event."""
        record = event.record
        if record is not None:
            (self._task_logger if record.name == TASK_RUN_LOGGER else logging.getLogger(record.name)).handle(record)
        elif event.run is not None:
            self.children.on_event(future, event)

    def load_outcome(self, future: TaskRunFuture[Any], data: bytes) -> TaskRunOutcome:
        """The outcome a worker sent as bytes (`encode_outcome`), loaded here; or Failed."""
        try:
            outcome: TaskRunOutcome = loads(data)
        except Exception as exc:
            message = (
                f"Task run {future.task_run.name!r} finished, but its result could not be loaded in "
                f"the flow's process ({type(exc).__name__}: {exc}): make what the task returns "
                "importable here, or return a plain value."
            )
            return lost_run_outcome(future._call, Failed(message, exception=exc))
        return outcome

    # A crash, a retry after it and an interrupt: decided here, in `_run_endings`.
    on_crash = _run_endings.on_crash
    _state_hooks = _run_endings.state_hooks
    _end_interrupted = _run_endings.end_interrupted
    cancel_pending = _run_endings.cancel_pending
    end_unfinished = _run_endings.end_unfinished

    def on_final(self, future: TaskRunFuture[Any]) -> None:
        """A run settled that did not complete, or that holds tag slots or has child runs:
        count it now (before the runs its slots free, so the first failure is the first to
        end), free the slots, end the children. A completed run is counted in `forget`."""
        if self.children.open:
            self.children.end(future)
        state = future.state
        ready: list[tuple[TaskRunCall, TaskRunFuture[Any]]] = []
        with self.lock:
            if state.type is not StateType.COMPLETED:
                self.count(future.task_run.name, state)
            if self.limits is not None:
                tags = self.limits.limited(future.task_run.tags)
                if tags:
                    ready = self.limits.release(tags)
        for call, waiting in ready:
            self._hand_over(call, waiting)

    def forget(self, future: TaskRunFuture[Any]) -> None:
        """The run is settled and its done-callbacks have run: a completed one counts for the
        flow's own state (one that did not was counted in `on_final`), and the flow run
        stops waiting for it."""
        completed = future.state.type is StateType.COMPLETED
        with self.lock:
            if completed:
                self._completed += 1
            self._pending.discard(future)
            if self._waiting_all:
                self._forgotten.notify_all()

    def record_subflow(self, name: str, state: State) -> None:
        """A child flow run counts in this flow run's final state like a task run."""
        with self.lock:
            self.count(f"subflow {name}", state)

    def count(self, name: str, state: State) -> None:
        """Count a final state for the flow's own; the caller holds the lock."""
        if state.type is StateType.COMPLETED:
            self._completed += 1
            return
        self._final_counts[state.type] += 1
        if self._first_failure is None and state.type in (StateType.FAILED, StateType.CRASHED):
            self._first_failure = (name, state)

    def log_task(self, task_run: TaskRun, level: int, message: str) -> None:
        if level < self.log_level:
            return
        flow_run = self.flow_run
        record = run_record(
            TASK_RUN_LOGGER, level, message, task_run.name, task_run.id, flow_run.name, self._flow_run_id
        )
        self._task_logger.handle(record)

    def _log_flow(self, message: str) -> None:
        """An INFO line of this flow run; the caller has checked the level."""
        flow_run = self.flow_run
        self._flow_logger.handle(
            run_record(FLOW_RUN_LOGGER, logging.INFO, message, None, None, flow_run.name, self._flow_run_id)
        )

    # -- the end of the flow run -----------------------------------------------------------

    def wait_all(self) -> None:
        while True:
            with self.lock:
                pending = list(self._pending)
            if not pending:
                return
            for future in pending:
                future.wait()  # inside a task run, this may run a queued run here
                with self._forgotten:  # and its done-callbacks, which run after waiters wake
                    self._waiting_all += 1
                    try:
                        while future in self._pending:
                            self._forgotten.wait()
                    finally:
                        self._waiting_all -= 1

    def counts(self) -> tuple[dict[StateType, int], tuple[str, State] | None]:
        counts = dict(self._final_counts)
        if self._completed:
            counts[StateType.COMPLETED] = self._completed
        return counts, self._first_failure
