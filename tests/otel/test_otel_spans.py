"""Real flows on real runners, read back as the spans an OpenTelemetry SDK exported.

Every test runs flows with ``@flow``/``@task`` and looks only at what a tracing backend would
receive: span names, parent links, trace ids, attributes, statuses, events and the order of
timestamps (never how long anything took).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import taskloom
from taskloom import flow, plugins, task
from taskloom.context import FlowRun, get_flow_run, get_task_run
from taskloom.states import State

if TYPE_CHECKING:
    from conftest import Tracing

# -- what the tests run ------------------------------------------------------------------


@task
def add(x: int, y: int) -> int:
    return x + y


@task(tags=["etl", "fast"])
def tagged() -> str:
    return "tagged"


@task
def explode(x: int) -> int:
    raise ValueError(f"bad input {x}")


@task(retries=1)
def flaky(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("the first attempt failed")
        raise RuntimeError("the first attempt fails")
    return "second attempt"


@task
def opens_a_span() -> str:
    with trace.get_tracer("tests").start_as_current_span("inside-the-task"):
        return "done"


def pipeline_on(runner: str) -> Any:
    @flow(name="otel-pipeline", task_runner=runner)
    def pipeline(marker: str) -> dict[str, Any]:
        a = add.submit(1, 2)
        b = add.submit(a, 10)  # waits for a
        direct = add(5, 5)  # called in the body: run here, now
        bad = explode.submit(3)
        retried = flaky.submit(marker)
        t = tagged.submit()
        bad.wait()
        return {
            "flow_run": get_flow_run(),
            "sum": b.result(),
            "direct": direct,
            "retried": retried.result(),
            "tagged": t.result(),
        }

    return pipeline


# -- reading spans ------------------------------------------------------------------------


class StateLog:
    """Every state change of every task run, as the hooks saw them in the flow's process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states: dict[str, list[State]] = defaultdict(list)

    @taskloom.hookimpl
    def taskloom_task_run_state_changed(self, task_run: Any, old: Any, new: State) -> None:
        with self.lock:
            self.states[task_run.name].append(new)

    def first(self, run: str, type_name: str) -> State:
        return next(s for s in self.states[run] if s.type.value == type_name)


@pytest.fixture
def state_log() -> Iterator[StateLog]:
    log = StateLog()
    plugins.register(log, name="otel-test-state-log")
    yield log
    plugins.unregister(log)


def ns(timestamp: float) -> int:
    return int(timestamp * 1_000_000_000)


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in spans]}"
    return found[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None, f"{child.name} has no parent"
    return (
        child.parent.span_id == parent.context.span_id
        and child.context.trace_id == parent.context.trace_id
    )


def check_nesting(spans: list[ReadableSpan]) -> None:
    """Every span starts before it ends, and lies within its parent when the parent is here."""
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time, span.name
        parent = by_id.get(span.parent.span_id) if span.parent else None
        if parent is not None:
            assert parent.start_time is not None and parent.end_time is not None
            assert parent.start_time <= span.start_time, f"{span.name} starts before {parent.name}"
            assert span.end_time <= parent.end_time, f"{span.name} ends after {parent.name}"
            assert span.context.trace_id == parent.context.trace_id


# -- one flow run on each local runner ---------------------------------------------------


@pytest.mark.parametrize(
    "runner",
    ["concurrent", "sequential", pytest.param("processes", marks=pytest.mark.slow)],
)
def test_a_flow_run_is_one_trace_of_task_spans(
    runner: str, tracing: Tracing, state_log: StateLog, tmp_path: Path
) -> None:
    result = pipeline_on(runner)(str(tmp_path / "flaky-marker"))
    assert (result["sum"], result["direct"], result["retried"]) == (13, 10, "second attempt")
    flow_run: FlowRun = result["flow_run"]
    spans = tracing.spans()
    check_nesting(spans)

    flow_span = only(spans, "otel-pipeline")
    assert flow_span.parent is None, "no span was current: the flow run starts a trace"
    assert attrs(flow_span) == {
        "taskloom.run.type": "flow",
        "taskloom.flow_run.id": str(flow_run.id),
        "taskloom.flow_run.name": flow_run.name,
        "taskloom.flow.name": "otel-pipeline",
        "taskloom.task_runner": runner,
        "taskloom.state.type": "COMPLETED",
        "taskloom.state.name": "Completed",
    }
    assert flow_span.status.status_code is StatusCode.UNSET
    assert flow_span.instrumentation_scope is not None
    assert flow_span.instrumentation_scope.name == "taskloom"

    task_spans = [s for s in spans if s is not flow_span]
    assert sorted(s.name for s in task_spans) == ["add", "add", "add", "explode", "flaky", "tagged"]
    assert all(is_child(s, flow_span) for s in task_spans)
    assert sorted(attrs(s)["taskloom.task_run.name"] for s in task_spans) == sorted(state_log.states)

    for span in task_spans:
        a = attrs(span)
        run = a["taskloom.task_run.name"]
        running, final = state_log.first(run, "RUNNING"), state_log.states[run][-1]
        # Spans take the states' own timestamps, taken where the run ran.
        assert span.start_time == ns(running.timestamp)
        assert span.end_time == ns(final.timestamp)
        assert a["taskloom.worker"] == state_log.states[run][-2].worker
        assert a["taskloom.run.type"] == "task"
        assert a["taskloom.task.name"] == span.name
        assert a["taskloom.task_run.id"]
        assert a["taskloom.flow_run.id"] == str(flow_run.id)
        assert a["taskloom.flow_run.name"] == flow_run.name
        assert a["taskloom.flow.name"] == "otel-pipeline"
        assert a["taskloom.task_runner"] == runner
        assert (a["taskloom.state.type"], a["taskloom.state.name"]) == (final.type.value, final.name)
    if runner == "processes":
        here = [s for s in task_spans if f"/{os.getpid()}/" in attrs(s)["taskloom.worker"]]
        assert len(here) == 1, "only the task called in the body ran in the flow's process"

    assert attrs(only(spans, "tagged"))["taskloom.task_run.tags"] == ("etl", "fast")
    assert attrs(named(spans, "add")[0])["taskloom.task_run.tags"] == ()

    bad = only(spans, "explode")
    failed = state_log.states[attrs(bad)["taskloom.task_run.name"]][-1]
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.status.description == failed.message
    assert attrs(bad)["taskloom.state.type"] == "FAILED"
    (event,) = [e for e in bad.events if e.name == "exception"]
    event_attrs = dict(event.attributes or {})
    assert event_attrs["exception.type"] == "ValueError"
    assert event_attrs["exception.message"] == "bad input 3"
    assert "in explode" in event_attrs["exception.stacktrace"], "the traceback from where it ran"

    retried = only(spans, "flaky")
    assert attrs(retried)["taskloom.task_run.retry_count"] == 1
    assert attrs(retried)["taskloom.state.name"] == "Completed"
    assert retried.status.status_code is StatusCode.UNSET
    assert [e.name for e in retried.events] == ["AwaitingRetry", "Retrying"]
    awaiting, retrying = retried.events
    assert retried.start_time is not None and retried.end_time is not None
    assert retried.start_time <= awaiting.timestamp <= retrying.timestamp <= retried.end_time
    assert dict(retrying.attributes or {})["taskloom.worker"]
    for span in task_spans:
        if span is not retried:
            assert attrs(span)["taskloom.task_run.retry_count"] == 0


def test_a_failed_flow_run_has_an_error_span(tracing: Tracing) -> None:
    @flow(name="otel-failing", task_runner="sequential")
    def failing() -> Any:
        return explode.submit(7)

    state = failing(return_state=True)
    assert state.is_failed()
    flow_span = only(tracing.spans(), "otel-failing")
    assert flow_span.status.status_code is StatusCode.ERROR
    assert flow_span.status.description == state.message
    assert attrs(flow_span)["taskloom.state.type"] == "FAILED"
    assert [dict(e.attributes or {})["exception.type"] for e in flow_span.events] == ["ValueError"]


def test_a_task_that_never_runs_spans_from_creation_to_its_final_state(
    tracing: Tracing, state_log: StateLog
) -> None:
    @flow(name="otel-upstream-failed", task_runner="sequential")
    def upstream_failed() -> Any:
        bad = explode.submit(1)
        add.submit(bad, 1)  # never runs: its input failed
        return None

    upstream_failed(return_state=True)
    spans = tracing.spans()
    check_nesting(spans)
    skipped = only(spans, "add")
    run = attrs(skipped)["taskloom.task_run.name"]
    pending, final = state_log.states[run][0], state_log.states[run][-1]
    assert final.name == "NotReady"
    assert (skipped.start_time, skipped.end_time) == (ns(pending.timestamp), ns(final.timestamp))
    assert attrs(skipped)["taskloom.state.name"] == "NotReady"
    assert "taskloom.worker" not in attrs(skipped)
    assert is_child(skipped, only(spans, "otel-upstream-failed"))


@task(cache_policy=taskloom.INPUTS)
def cached_square(x: int) -> int:
    return x * x


def test_a_cache_hit_spans_from_creation_to_cached(
    tracing: Tracing, state_log: StateLog, in_tmp: Path
) -> None:
    @flow(name="otel-cached", task_runner="sequential")
    def squares() -> int:
        return cached_square(4)

    assert squares() == 16
    tracing.exporter.clear()
    assert squares() == 16  # the second run reads the first one's result
    hit = only(tracing.spans(), "cached_square")
    a = attrs(hit)
    assert (a["taskloom.state.type"], a["taskloom.state.name"]) == ("COMPLETED", "Cached")
    pending, final = state_log.states[a["taskloom.task_run.name"]][-2:]
    assert (hit.start_time, hit.end_time) == (ns(pending.timestamp), ns(final.timestamp))
    assert "taskloom.worker" not in a, "it never ran"
    assert hit.status.status_code is StatusCode.UNSET


# -- subflows ----------------------------------------------------------------------------


@flow(name="otel-child", task_runner="sequential")
def child_flow(n: int) -> int:
    return add(n, 1) + add.submit(n, 2).result()


@task
def runs_a_subflow(n: int) -> int:
    return child_flow(n)


def test_a_subflow_is_a_child_span_in_the_same_trace(tracing: Tracing) -> None:
    @flow(name="otel-parent")
    def parent() -> tuple[int, FlowRun | None]:
        first = add.submit(1, 1)
        return child_flow(first.result()), get_flow_run()

    total, parent_run = parent()
    assert total == 7 and parent_run is not None
    spans = tracing.spans()
    check_nesting(spans)
    assert len({s.context.trace_id for s in spans}) == 1, "one trace for the whole run"
    parent_span, child_span = only(spans, "otel-parent"), only(spans, "otel-child")
    assert parent_span.parent is None
    assert is_child(child_span, parent_span)
    assert attrs(child_span)["taskloom.flow_run.parent_flow_run.id"] == str(parent_run.id)
    assert attrs(child_span)["taskloom.task_runner"] == "sequential"
    child_tasks = [s for s in named(spans, "add") if is_child(s, child_span)]
    assert len(child_tasks) == 2
    parent_tasks = [s for s in named(spans, "add") if is_child(s, parent_span)]
    assert len(parent_tasks) == 1


def test_a_subflow_called_in_a_task_is_a_child_of_that_task_span(tracing: Tracing) -> None:
    @flow(name="otel-nesting", task_runner="concurrent")
    def nesting() -> int:
        return runs_a_subflow.submit(5).result()

    assert nesting() == 13
    spans = tracing.spans()
    check_nesting(spans)
    assert len({s.context.trace_id for s in spans}) == 1
    task_span, child_span = only(spans, "runs_a_subflow"), only(spans, "otel-child")
    assert is_child(task_span, only(spans, "otel-nesting"))
    assert is_child(child_span, task_span)
    assert attrs(child_span)["taskloom.flow_run.parent_task_run.id"] == attrs(task_span)["taskloom.task_run.id"]
    assert attrs(child_span)["taskloom.flow_run.parent_flow_run.id"] == attrs(task_span)["taskloom.flow_run.id"]


# -- the caller's spans and the user's own ------------------------------------------------


@pytest.mark.parametrize("runner", ["concurrent", "sequential"])
def test_spans_nest_with_the_callers_and_the_users_own(tracing: Tracing, runner: str) -> None:
    tracer = trace.get_tracer("tests")

    @flow(name="otel-nested", task_runner=runner)
    def nested() -> str:
        with tracer.start_as_current_span("in-the-flow-body"):
            pass
        return opens_a_span.submit().result()

    with tracer.start_as_current_span("user-request") as outer:
        assert nested() == "done"
        assert trace.get_current_span() is outer, "the flow run's span is current only inside it"
    assert not trace.get_current_span().get_span_context().is_valid

    spans = tracing.spans()
    check_nesting(spans)
    request, flow_span = only(spans, "user-request"), only(spans, "otel-nested")
    assert is_child(flow_span, request), "a top-level flow run joins the caller's trace"
    assert is_child(only(spans, "in-the-flow-body"), flow_span)
    task_span = only(spans, "opens_a_span")
    assert is_child(task_span, flow_span)
    assert is_child(only(spans, "inside-the-task"), task_span)


def test_flow_runs_in_two_threads_make_two_traces(tracing: Tracing) -> None:
    @flow(name="otel-threaded", task_runner="concurrent")
    def threaded(n: int) -> FlowRun | None:
        futures = [add.submit(n, i) for i in range(5)]
        [f.result() for f in futures]
        return get_flow_run()

    barrier = threading.Barrier(2)
    runs: list[FlowRun | None] = []

    def run(n: int) -> None:
        barrier.wait()
        runs.append(threaded(n))

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    spans = tracing.spans()
    check_nesting(spans)
    flows = named(spans, "otel-threaded")
    assert len(flows) == 2 and flows[0].context.trace_id != flows[1].context.trace_id
    for flow_span in flows:
        run_id = attrs(flow_span)["taskloom.flow_run.id"]
        children = [s for s in named(spans, "add") if is_child(s, flow_span)]
        assert len(children) == 5
        assert {attrs(s)["taskloom.flow_run.id"] for s in children} == {run_id}


def test_an_async_flow_and_task(tracing: Tracing) -> None:
    @task
    async def slow_add(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    @flow(name="otel-async")
    async def async_flow() -> int:
        return await slow_add(1, 2) + await slow_add(3, 4)

    assert asyncio.run(async_flow()) == 10
    assert not trace.get_current_span().get_span_context().is_valid
    spans = tracing.spans()
    check_nesting(spans)
    flow_span = only(spans, "otel-async")
    assert [is_child(s, flow_span) for s in named(spans, "slow_add")] == [True, True]


# -- never in the way ------------------------------------------------------------------


@pytest.fixture
def fresh_report() -> Iterator[None]:
    from taskloom_otel import plugin

    plugin._State.report_key = object()
    yield
    plugin._State.report_key = object()


def test_a_broken_tracing_setup_never_fails_a_flow(
    tracing: Tracing, fresh_report: None, caplog: pytest.LogCaptureFixture
) -> None:
    @flow(name="otel-broken", task_runner="concurrent")
    def broken() -> int:
        return sum(add.submit(i, i).result() for i in range(4))

    tracing.faulty.armed = True
    with caplog.at_level(logging.WARNING, logger="taskloom_otel"):
        assert broken() == 12
        assert broken(return_state=True).is_completed()
    warnings = [r for r in caplog.records if r.name == "taskloom_otel"]
    assert len(warnings) == 1, "reported once per process"
    assert "runs are unaffected" in warnings[0].getMessage()
    assert "the tracing backend is unreachable" in warnings[0].getMessage()

    tracing.faulty.armed = False
    broken()
    assert len(named(tracing.spans(), "add")) == 4, "the next flow run is traced again"


def test_the_plugin_is_found_through_its_entry_point() -> None:
    found = {p.name: p for p in plugins.plugins()}
    assert "otel" in found
    assert get_task_run() is None
