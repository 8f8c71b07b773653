"""Spans for flow runs and task runs, made in the flow's process from the runs' states.

Task-run spans are started and ended with the timestamps of the states (taken where the run
ran), not with the time the hook is called: a process or cluster runner replays a run's
states in the flow's process after the fact, and its span must still show when it ran.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

import taskloom
from taskloom.context import FlowRun, TaskRun
from taskloom.states import State, StateType

from . import _attributes as attr

__all__ = ["Tracker"]

_ERROR_TYPES = frozenset({StateType.FAILED, StateType.CRASHED})


def _ns(timestamp: float) -> int:
    return int(timestamp * 1_000_000_000)


def _tracer() -> Tracer | None:
    """The global provider's tracer, or None when nothing would record the spans."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    tracer = trace.get_tracer(attr.TRACER_NAME, taskloom.__version__, tracer_provider=provider)
    return None if isinstance(tracer, trace.NoOpTracer) else tracer


def _set_error(span: Span, state: State, at: int) -> None:
    if state.type not in _ERROR_TYPES:
        return  # the OTel spec leaves a successful span's status unset
    if state.exception is not None:
        # An exception that crossed from a worker lost its frames; the state kept the text.
        extra = {"exception.stacktrace": state.traceback} if state.traceback else None
        span.record_exception(state.exception, attributes=extra, timestamp=at)
    span.set_status(Status(StatusCode.ERROR, state.message or state.name))


class _FlowSpan:
    __slots__ = ("attributes", "context", "floor_ns", "parent", "span", "start_ns", "tasks", "thread", "token", "tracer")

    def __init__(
        self,
        tracer: Tracer,
        span: Span,
        context: Context,
        start_ns: int,
        attributes: dict[str, Any],
        parent: _FlowSpan | _TaskSpan | None,
    ) -> None:
        self.tracer = tracer
        self.span = span
        self.context = context
        self.start_ns = start_ns
        self.floor_ns = start_ns  # the latest end of a child: the span ends no earlier
        self.attributes = attributes  # what every task span of the flow run repeats
        self.parent = parent
        self.tasks: dict[uuid.UUID, _TaskSpan] = {}
        self.thread = threading.get_ident()
        self.token: Token[Context] | None = None


class _TaskSpan:
    __slots__ = ("early", "first_ns", "floor_ns", "flow", "last", "retries", "span", "start_ns", "task_run")

    def __init__(self, task_run: TaskRun, flow: _FlowSpan, first_ns: int) -> None:
        self.task_run = task_run
        self.flow = flow
        self.first_ns = first_ns  # creation: the start of a run that never ran
        self.start_ns = first_ns
        self.floor_ns = first_ns
        self.span: Span | None = None
        self.early: list[State] = []  # state changes seen before the span could start
        self.retries = 0
        self.last: State | None = None


class Tracker:
    """The open spans of this process, by run id; shared by every flow run, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flows: dict[uuid.UUID, _FlowSpan] = {}
        self._tasks: dict[uuid.UUID, _TaskSpan] = {}

    # -- flow runs -------------------------------------------------------------------------

    def flow_started(self, flow_run: FlowRun, runner: str) -> bool:
        """Start the flow run's span; False if no tracer provider would record it."""
        tracer = _tracer()
        if tracer is None:
            return False
        parent, context, lineage = self._parent(flow_run)
        start = time.time_ns()
        attributes: dict[str, Any] = {
            attr.FLOW_RUN_ID: str(flow_run.id),
            attr.FLOW_RUN_NAME: flow_run.name,
            attr.FLOW_NAME: flow_run.flow_name,
            attr.TASK_RUNNER: runner,
        }
        span = tracer.start_span(
            flow_run.flow_name,
            context=context,
            start_time=start,
            attributes={attr.RUN_TYPE: "flow", **attributes, **lineage},
        )
        own = trace.set_span_in_context(span, context)
        record = _FlowSpan(tracer, span, own, start, attributes, parent)
        with self._lock:
            self._flows[flow_run.id] = record
        # Current in the flow body, and through the runners' copied contexts in task threads:
        # the started and finished hooks run in the same thread and context, so they pair.
        record.token = otel_context.attach(own)
        return True

    def _parent(self, flow_run: FlowRun) -> tuple[_FlowSpan | _TaskSpan | None, Context, dict[str, str]]:
        """The span a new flow run's span is a child of: its parent run's, else the caller's."""
        current = otel_context.get_current()
        task_id, flow_id = flow_run.parent_task_run_id, flow_run.parent_flow_run_id
        lineage: dict[str, str] = {}
        if flow_id is not None:
            lineage[attr.PARENT_FLOW_RUN_ID] = str(flow_id)
        if task_id is not None:
            lineage[attr.PARENT_TASK_RUN_ID] = str(task_id)
        parent: _FlowSpan | _TaskSpan | None = None
        with self._lock:
            if task_id is not None:
                parent = self._tasks.get(task_id)
            if (parent is None or parent.span is None) and flow_id is not None:
                parent = self._flows.get(flow_id)
        if parent is None or parent.span is None:
            return None, current, lineage  # a top-level run: under the caller's span, if any
        parent_span = parent.span
        current_trace = trace.get_current_span(current).get_span_context().trace_id
        if current_trace == parent_span.get_span_context().trace_id:
            return parent, current, lineage  # the parent's span, or one the user opened in it
        # A thread or event loop that did not inherit the parent's context.
        return parent, trace.set_span_in_context(parent_span, current), lineage

    def flow_finished(self, flow_run: FlowRun, state: State) -> None:
        with self._lock:
            record = self._flows.pop(flow_run.id, None)
            if record is None:
                return
            unsettled = list(record.tasks.values())
            record.tasks.clear()
            for task in unsettled:
                self._tasks.pop(task.task_run.id, None)
        if record.token is not None and record.thread == threading.get_ident():
            otel_context.detach(record.token)
        end = _ns(state.timestamp)
        try:
            for task in unsettled:
                self._close_unsettled(task, end)
        finally:
            self._end_flow(record, state, end)

    def _end_flow(self, record: _FlowSpan, state: State, end: int) -> None:
        end = max(end, record.floor_ns)
        span = record.span
        span.set_attributes(attr.state_attributes(state))
        _set_error(span, state, end)
        span.end(end_time=end)
        self._raise_floor(record.parent, end)

    def _raise_floor(self, record: _FlowSpan | _TaskSpan | None, end: int) -> None:
        # Clocks of other machines may run ahead: a parent never ends before its children.
        if record is not None:
            with self._lock:
                record.floor_ns = max(record.floor_ns, end)

    # -- task runs -------------------------------------------------------------------------

    def state_changed(self, task_run: TaskRun, old: State | None, new: State) -> None:
        record = self._tasks.get(task_run.id)
        if record is None:
            flow = self._flows.get(task_run.flow_run_id)  # type: ignore[arg-type]
            if flow is None:
                return  # a flow run with no span: no provider was set when it started
            record = _TaskSpan(task_run, flow, max(_ns(new.timestamp), flow.start_ns))
            with self._lock:
                self._tasks[task_run.id] = flow.tasks[task_run.id] = record
        record.last = new
        if new.name == "Retrying":
            record.retries += 1
        if new.type is StateType.RUNNING:
            if record.span is None:
                self._start_task(record, _ns(new.timestamp), new.worker)
            else:
                record.span.add_event(new.name, attr.state_attributes(new), _ns(new.timestamp))
                if new.worker:
                    record.span.set_attribute(attr.WORKER, new.worker)
        elif new.is_terminal():  # a final state, or NotReady: the run never ran
            self._end_task(record, new)
        elif old is not None:
            if record.span is None:
                record.early.append(new)
            else:
                record.span.add_event(new.name, attr.state_attributes(new), _ns(new.timestamp))

    def _start_task(self, record: _TaskSpan, at: int, worker: str | None) -> Span:
        flow, task_run = record.flow, record.task_run
        start = max(at, flow.start_ns)
        if record.early:
            # A crash lost the first attempt's Running state: start at what came before it.
            start = max(min(start, _ns(record.early[0].timestamp)), flow.start_ns)
        attributes: dict[str, Any] = {
            attr.RUN_TYPE: "task",
            **flow.attributes,
            attr.TASK_RUN_ID: str(task_run.id),
            attr.TASK_RUN_NAME: task_run.name,
            attr.TASK_NAME: task_run.task_name,
            attr.TASK_KEY: task_run.task_key,
            attr.TASK_RUN_TAGS: sorted(task_run.tags),
        }
        if worker:
            attributes[attr.WORKER] = worker
        span = flow.tracer.start_span(
            task_run.task_name, context=flow.context, start_time=start, attributes=attributes
        )
        record.span, record.start_ns = span, start
        for state in record.early:
            span.add_event(state.name, attr.state_attributes(state), _ns(state.timestamp))
        record.early.clear()
        return span

    def _end_task(self, record: _TaskSpan, state: State) -> None:
        span = record.span or self._start_task(record, record.first_ns, None)
        end = max(_ns(state.timestamp), record.start_ns, record.floor_ns)
        attributes = attr.state_attributes(state)
        attributes[attr.RETRY_COUNT] = record.retries
        span.set_attributes(attributes)
        _set_error(span, state, end)
        span.end(end_time=end)
        flow = record.flow
        with self._lock:
            self._tasks.pop(record.task_run.id, None)
            flow.tasks.pop(record.task_run.id, None)
            flow.floor_ns = max(flow.floor_ns, end)

    def _close_unsettled(self, record: _TaskSpan, at: int) -> None:
        """A task run whose last state was not final when its flow run finished."""
        span = record.span or self._start_task(record, record.first_ns, None)
        if record.last is not None:
            span.set_attributes(attr.state_attributes(record.last))
        span.end(end_time=max(at, record.start_ns))

    # -- the task run's span, current while its function runs ------------------------------

    def enter_task(self, task_run: TaskRun) -> Token[Context] | None:
        record = self._tasks.get(task_run.id)
        if record is None or record.span is None:
            return None
        return otel_context.attach(trace.set_span_in_context(record.span))

    def leave_task(self, token: Token[Context]) -> None:
        otel_context.detach(token)
