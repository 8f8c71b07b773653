"""`RunnerConformance`: what every task runner must do, as pytest tests.

Each test runs real flows on the runner under test and reads what a user reads: states,
results, logs and hook calls. Failures say which behaviour broke, in the runner's terms.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import flow, plugins
from taskloom.config import set_cli_values
from taskloom.states import UpstreamTaskError

from . import _tasks as t
from ._prefect_cases import PrefectBehaviour

#: Bumped when a case is added: a runner passing version N passes every case up to N.
CONFORMANCE_VERSION = 7

# No case assumes that workers share the flow's files: tasks report through results and log
# lines, and persisted results go to `shared_results` (``--taskloom-shared-dir``), so the kit
# runs unchanged on a cluster of several hosts.


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


class RunnerConformance(PrefectBehaviour):
    """Subclass it and set ``runner``; every test here must pass on your runner.

    ``runner`` is a registered name (``"dask"``), a runner instance (a fresh duplicate is
    used per flow run), or a zero-argument factory. Or override the ``taskloom_runner``
    fixture to return one of those, for a runner connected to a session-scoped cluster.
    """

    runner: Any = None
    #: How many no-op task runs `test_many_small_tasks` submits.
    many_tasks: int = 1000
    #: Seconds each of the overlapping tasks sleeps in `test_runs_overlap`.
    overlap_seconds: float = 1.0

    @pytest.fixture
    def taskloom_runner(self, request: pytest.FixtureRequest) -> Iterator[Any]:
        spec = _class_attribute(self, "runner")
        undo: Callable[[], None] = lambda: None  # noqa: E731
        if spec is None:
            spec = request.config.getoption("--taskloom-runner", default=None)
            if spec is None:
                pytest.skip(
                    "No runner under test: set `runner = ...` on the class or pass "
                    "--taskloom-runner NAME."
                )
            options = request.config.getoption("--taskloom-runner-option", default=[]) or []
            values = {}
            for item in options:
                key, _, value = item.partition("=")
                values[f"runners.{spec}.{key.strip()}"] = value
            undo = set_cli_values(values)
        elif callable(spec) and not isinstance(spec, type) and not hasattr(spec, "submit"):
            spec = spec()  # a zero-argument factory: a function, a lambda, a partial
        try:
            yield spec
        finally:
            undo()

    @pytest.fixture
    def shared_results(
        self, request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[Path]:
        """A fresh ``results.path`` for the test, in a folder the workers share with the flow.

        ``--taskloom-shared-dir`` names that folder for a cluster whose workers sit on other
        hosts (a network filesystem mounted at the same path everywhere); by default it is
        the test's ``tmp_path``, which workers on this host share.
        """
        base = request.config.getoption("--taskloom-shared-dir", default=None)
        where = Path(tempfile.mkdtemp(prefix="results-", dir=base)) if base else tmp_path / "results"
        monkeypatch.setenv("TASKLOOM_RESULTS_PATH", str(where))
        yield where
        if base:
            shutil.rmtree(where, ignore_errors=True)

    @pytest.fixture
    def shared_folder(self, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Path]:
        """A fresh folder under ``--taskloom-shared-dir`` (else the test's ``tmp_path``)."""
        base = request.config.getoption("--taskloom-shared-dir", default=None)
        if not base:
            yield tmp_path
            return
        where = Path(tempfile.mkdtemp(prefix="shared-", dir=base))
        yield where
        shutil.rmtree(where, ignore_errors=True)

    @pytest.fixture
    def hooks(self) -> Iterator[_HookRecorder]:
        recorder = _HookRecorder()
        plugins.register(recorder, name=f"conformance-recorder-{id(recorder)}")
        try:
            yield recorder
        finally:
            plugins.unregister(recorder)

    @pytest.fixture
    def run_logs(self) -> Iterator[_Capture]:
        capture = _Capture()
        logger = logging.getLogger("taskloom")
        logger.addHandler(capture)
        try:
            yield capture
        finally:
            logger.removeHandler(capture)

    @staticmethod
    def _concurrency(runner: Any) -> str:
        if isinstance(runner, str):
            return str(getattr(plugins.lookup("task_runner", runner).load(), "concurrency", ""))
        return str(getattr(runner, "concurrency", "concurrent"))

    # -- results and failures -------------------------------------------------------------

    def test_result_of_submitted_task(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def results() -> Any:
            future = t.add.submit(1, 2)
            return future, future.result()

        state = results(return_state=True)
        assert state.is_completed(), f"flow ended {state!r}: {state.message}"
        returned, value = state.result()
        assert value == 3
        assert isinstance(returned, taskloom.State), "a returned future reaches the caller as its final state"
        assert returned.is_completed() and returned.name == "Completed"
        assert returned.result() == 3

    def test_exception_gives_failed_state_with_traceback(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def failing() -> Any:
            future = t.fail.submit("conformance boom")
            future.wait()
            return future.state

        state = failing(return_state=True)
        assert state.is_failed(), f"a flow returning a Failed state must fail, got {state!r}"
        assert isinstance(state.exception, t.ConformanceError), (
            "the task's own exception type must survive the trip from the worker"
        )
        with pytest.raises(t.ConformanceError, match="conformance boom"):
            failing()

    def test_failed_task_fails_flow_returning_none(self, taskloom_runner: Any) -> None:
        seen: dict[str, Any] = {}

        @flow(task_runner=taskloom_runner)
        def one_fails() -> None:
            ok = t.add.submit(1, 1)
            bad = t.fail.submit("second fails")
            seen["ok"], seen["bad"] = ok, bad

        state = one_fails(return_state=True)
        assert state.is_failed() and state.message, f"expected Failed, got {state!r}"
        assert state.message.startswith("1/2 states failed."), state.message
        assert "second fails" in state.message and "Traceback" in state.message
        bad_state = seen["bad"].state
        assert bad_state.is_failed()
        assert isinstance(bad_state.exception, t.ConformanceError)
        assert "raise ConformanceError(message)" in (bad_state.traceback or ""), (
            "the traceback from the worker must travel with the state"
        )
        assert seen["ok"].state.is_completed()

    # -- inputs and dependencies ----------------------------------------------------------

    def test_futures_as_inputs_wait_for_upstream(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def chain() -> Any:
            first = t.stamped.submit("a", 0.3)
            second = t.stamped.submit(first, 0.0)
            return first.result(), second.result()

        (value_a, _, end_a), ((inner, _, _), start_b, _) = chain()
        assert value_a == "a" and inner == "a"
        assert start_b >= end_a, "a task must not start before the task whose future it takes"

    def test_futures_inside_collections_are_resolved(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def collections() -> Any:
            parts = [t.add.submit(i, 1) for i in range(5)]
            as_list = t.total.submit(parts)
            as_dict = t.total.submit({f"k{i}": p for i, p in enumerate(parts)})
            nested = t.identity.submit({"list": parts[:2], "tuple": (parts[2], 7)})
            return as_list.result(), as_dict.result(), nested.result()

        as_list, as_dict, nested = collections()
        assert as_list == as_dict == sum(range(1, 6))
        assert nested == {"list": [1, 2], "tuple": (3, 7)}

    def test_upstream_failure_leaves_downstream_not_ready(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def broken_chain() -> Any:
            bad = t.fail.submit("upstream")
            after = t.identity.submit(bad)
            after.wait()
            return after

        state = broken_chain(return_state=True)
        assert state.is_failed(), f"a flow returning a run that never ran must fail, got {state!r}"
        assert state.message == "1/1 states are not final."

        @flow(task_runner=taskloom_runner)
        def inspect_downstream() -> Any:
            after = t.identity.submit(t.fail.submit("upstream"))
            after.wait()
            return after.state

        after_state = inspect_downstream(return_state=True)
        # The flow returned the downstream state: NotReady is not final, so the flow fails.
        assert after_state.is_failed()
        with pytest.raises(UpstreamTaskError):
            inspect_downstream()

    def test_map_with_unmapped(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def mapped() -> list[int]:
            futures = t.add.map(list(range(50)), taskloom.unmapped(100))
            return [f.result() for f in futures]

        assert mapped() == [i + 100 for i in range(50)]

    def test_map_over_futures(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def mapped() -> list[int]:
            firsts = t.add.map([1, 2, 3], 1)
            return [f.result() for f in t.add.map(firsts, 10)]

        assert mapped() == [12, 13, 14]

    def test_wait_and_as_completed(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def waiting() -> Any:
            futures = [t.add.submit(i, i) for i in range(10)]
            done, not_done = taskloom.wait(futures, timeout=120)
            order = [f.result() for f in taskloom.as_completed(futures, timeout=120)]
            return len(done), len(not_done), sorted(order)

        done, not_done, values = waiting()
        assert (done, not_done) == (10, 0)
        assert values == sorted(2 * i for i in range(10))

    def test_many_small_tasks(self, taskloom_runner: Any) -> None:
        n = self.many_tasks

        @flow(task_runner=taskloom_runner)
        def many() -> Any:
            futures = [t.add.submit(i, 1) for i in range(n)]
            return [f.result() for f in futures]

        state = many(return_state=True)
        assert state.is_completed(), f"{n} small tasks: flow ended {state!r}"
        assert state.result() == [i + 1 for i in range(n)], "a result was lost or reordered"

    def test_runs_overlap_when_the_runner_is_concurrent(self, taskloom_runner: Any) -> None:
        seconds = self.overlap_seconds

        @flow(task_runner=taskloom_runner)
        def two() -> Any:
            a, b = t.interval.submit(seconds), t.interval.submit(seconds)
            return a.result(), b.result()

        (start_a, end_a, _), (start_b, end_b, _) = two()
        overlap = min(end_a, end_b) > max(start_a, start_b)
        if self._concurrency(taskloom_runner) == "sequential":
            assert not overlap, "a sequential runner ran two task runs at the same time"
        else:
            assert overlap, "a concurrent or parallel runner ran two sleeping tasks one after the other"

    # -- what the flow's process sees ------------------------------------------------------

    def test_state_changes_reach_hooks_in_order(self, taskloom_runner: Any, hooks: _HookRecorder) -> None:
        @flow(task_runner=taskloom_runner)
        def observed() -> None:
            t.add.submit(1, 2)
            t.fail.submit("observed failure")

        observed(return_state=True)
        assert len(hooks.created) == 2
        by_task = {name.split("-")[0]: seq for name, seq in hooks.states.items()}
        assert by_task["add"] == [(None, "Pending"), ("Pending", "Running"), ("Running", "Completed")]
        assert by_task["fail"] == [(None, "Pending"), ("Pending", "Running"), ("Running", "Failed")]
        assert hooks.pids == {os.getpid()}, "lifecycle hooks must run in the flow's process"
        assert hooks.flow_runs and hooks.flow_runs[-1][1] == "Failed"

    def test_hooks_see_what_runs_were_given_and_where_they_ran(
        self, taskloom_runner: Any, hooks: _HookRecorder
    ) -> None:
        @flow(task_runner=taskloom_runner)
        def located() -> str:
            first = t.add.submit(1, y=2)
            t.identity.submit(first)
            return t.where.submit().result()

        worker = located()
        assert len(hooks.runners) == 1 and hasattr(hooks.runners[0], "submit"), (
            "taskloom_flow_run_started must receive the flow run's task runner"
        )
        given = {name.split("-")[0]: params for name, params in hooks.parameters.items()}
        assert given["add"] == {"x": 1, "y": 2}
        assert isinstance(given["identity"]["value"], taskloom.futures.TaskRunFuture), (
            "taskloom_task_run_created receives the parameters as given, futures unresolved"
        )
        [where_run] = [name for name in hooks.workers if name.startswith("where-")]
        assert hooks.workers[where_run] == [worker], (
            "a Running state's worker must say host/pid/thread of the code that ran the task"
        )

    def test_run_logs_reach_the_flow_process(self, taskloom_runner: Any, run_logs: _Capture) -> None:
        @flow(task_runner=taskloom_runner)
        def logging_flow() -> Any:
            return t.log_lines.submit("conformance", 3)

        logging_flow()
        mine = [r for r in run_logs.records if "conformance" in r.getMessage()]
        assert [r.getMessage() for r in mine] == [
            "line 0 of conformance",
            "line 1 of conformance",
            "line 2 of conformance",
            "warned conformance",
        ], "a task's log lines must arrive in the flow's process, once each, in order"
        names = {getattr(r, "task_run_name", None) for r in mine}
        assert len(names) == 1 and str(next(iter(names))).startswith("log_lines-")
        finished = [
            r for r in run_logs.records
            if getattr(r, "task_run_name", None) in names and "Finished in state" in r.getMessage()
        ]
        assert [r.getMessage() for r in finished] == ["Finished in state Completed()"]

    def test_task_run_names_are_unique_and_numbered(self, taskloom_runner: Any, hooks: _HookRecorder) -> None:
        @flow(task_runner=taskloom_runner)
        def named() -> None:
            for _ in range(3):
                t.noop.submit()

        named()
        assert len(set(hooks.created)) == 3
        assert sorted(name.rsplit("-", 1)[1] for name in hooks.created) == ["0", "1", "2"]
        assert all(name.startswith("noop-") for name in hooks.created)

    # -- task semantics (version 2): written once in the engine, the same on every runner -----

    def test_retries_go_through_awaiting_retry(self, taskloom_runner: Any, hooks: _HookRecorder) -> None:
        @flow(task_runner=taskloom_runner)
        def retried() -> Any:
            return t.flaky.submit()

        assert retried().result() == "succeeded after 2 retries"
        [sequence] = hooks.states.values()
        assert [new for _, new in sequence] == [
            "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed",
        ], "retries happen in the engine where the task runs, each state reaching the flow's process"

    def test_timeout_gives_timed_out(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def slow() -> Any:
            future = t.too_slow.submit()
            future.wait()
            return {"state": future.state}

        state = slow()["state"]
        assert state.name == "TimedOut" and state.is_failed()
        assert state.message == "Task run exceeded timeout of 0.5 second(s)"

    def test_cache_hit_gives_cached_across_flow_runs(
        self, taskloom_runner: Any, shared_results: Any, run_logs: _Capture
    ) -> None:
        from taskloom.caching import INPUTS

        cached = t.counted.with_options(cache_policy=INPUTS)
        value = uuid.uuid4().int % 10**9  # a key of this test alone, in a storage that may be shared

        @flow(task_runner=taskloom_runner)
        def cache_flow() -> Any:
            future = cached.submit(value)
            return {"value": future.result(), "state": future.state.name}

        first, second = cache_flow(), cache_flow()
        assert first == {"value": value * 10, "state": "Completed"}
        assert second == {"value": value * 10, "state": "Cached"}, "the second run must reuse the stored result"
        ran = [r for r in run_logs.records if r.getMessage() == f"counted computed {value}"]
        assert len(ran) == 1, "a cached task must not run again"

    def test_persisted_result_loads_lazily_and_checks_its_checksum(
        self, taskloom_runner: Any, shared_results: Any
    ) -> None:
        from taskloom.results import read_record

        persisted = t.identity.with_options(persist_result=True, result_serializer="json")

        @flow(task_runner=taskloom_runner)
        def persist_flow() -> Any:
            future = persisted.submit({"answer": 42})
            future.wait()
            return {"state": future.state}

        state = persist_flow()["state"]
        reference = state.data
        # Read through the storage the run used (whichever is configured), not its files.
        assert hasattr(reference, "storage") and hasattr(reference, "key"), (
            f"a persisted result must come back as a reference to the storage, got {reference!r}"
        )
        header, payload = read_record(reference.storage, reference.key)
        assert header["serializer"] == "json" and payload == b'{"answer": 42}'
        assert state.result() == {"answer": 42}

    def test_task_state_hooks_run_with_the_run_context(self, taskloom_runner: Any, run_logs: _Capture) -> None:
        @flow(task_runner=taskloom_runner)
        def hook_flow() -> None:
            t.hooked.submit(False)
            t.hooked.submit(True)

        hook_flow(return_state=True)
        seen = sorted(r.getMessage().split(" for ")[0] for r in run_logs.records if r.getMessage().startswith("hook saw"))
        assert seen == ["hook saw Completed", "hook saw Failed"]

    def test_log_prints_and_run_name_templates(self, taskloom_runner: Any, run_logs: _Capture) -> None:
        @flow(task_runner=taskloom_runner)
        def named_prints() -> Any:
            return t.prints.submit("loudly").result(), t.greet.submit("ada").task_run.name

        value, greeting = named_prints()
        assert value == "loudly"
        assert greeting == "greet-ada"
        lines = [r for r in run_logs.records if r.getMessage() == "printed loudly"]
        assert len(lines) == 1 and str(getattr(lines[0], "task_run_name", "")).startswith("prints-")

    def test_allow_failure_and_wait_for(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def tolerant() -> Any:
            bad = t.fail.submit("tolerated")
            got = t.identity.submit(taskloom.allow_failure(bad))
            first = t.stamped.submit("first", 0.2)
            after = t.stamped.submit("after", wait_for=[first])  # type: ignore[call-overload]
            return {"got": got.result(), "first": first.result(), "after": after.result()}

        result = tolerant(return_state=True).result()
        assert isinstance(result["got"], t.ConformanceError)
        assert result["after"][1] >= result["first"][2], "wait_for must order the runs"

    def test_async_tasks_run_on_the_runner(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def with_async() -> list[int]:
            return [f.result() for f in t.async_double.map([1, 2, 3])]  # type: ignore[misc]

        assert with_async() == [2, 4, 6]

    def test_tag_concurrency_limit_holds_runs_back(
        self, taskloom_runner: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "taskloom.toml").write_text("[concurrency_limits]\nconformance-db = 1\n")
        monkeypatch.chdir(tmp_path)
        limited = t.interval.with_options(tags=["conformance-db"])

        @flow(task_runner=taskloom_runner)
        def limited_flow() -> Any:
            return [f.result() for f in limited.map([0.4, 0.4])]

        (_, end_a, _), (start_b, _, _) = sorted(limited_flow())
        assert start_b >= end_a, "two runs of a tag limited to 1 must not overlap"

    # -- where data lives ---------------------------------------------------------------------

    def test_a_large_result_moves_only_when_asked_for(self, taskloom_runner: Any, hooks: Any) -> None:
        """A runner that declares ``Capability.REMOTE_RESULTS`` leaves a large result on its
        worker: the flow's process sees the state, a downstream run takes the data, and
        ``.result()`` fetches it once. Every runner gives the same values."""
        from taskloom.runners import Capability, RemoteResult

        seen: dict[str, Any] = {}

        @flow(task_runner=taskloom_runner)
        def large() -> int:
            made = t.blob.submit(4)
            length = t.size.submit(made).result()  # type: ignore[call-overload]
            made.wait()
            data = made.state.data
            seen["left on the worker"] = isinstance(data, RemoteResult) and not data.fetched
            value = made.result()
            seen["value"] = value
            seen["fetched once"] = isinstance(data, RemoteResult) and data.fetched and made.result() is value
            return length  # type: ignore[no-any-return]

        assert large() == 4 << 20
        assert seen["value"] == b"x" * (4 << 20)
        if Capability.REMOTE_RESULTS in hooks.runners[-1].capabilities:
            assert seen["left on the worker"], "the result came to the flow's process unasked"
            assert seen["fetched once"], ".result() must fetch the result once and keep it"

    # -- timeouts a runner enforces ----------------------------------------------------------

    def test_timed_out_work_really_stops(self, taskloom_runner: Any, hooks: Any, shared_folder: Path) -> None:
        """A runner that declares ``Capability.ENFORCES_TIMEOUTS`` stops the work at the
        deadline: nothing of a timed-out run goes on. (Checked in `shared_folder`, where the
        workers can see it; elsewhere the task says so and the check is skipped.)"""
        import time

        from taskloom.runners import Capability

        seen: dict[str, Any] = {}

        @flow(task_runner=taskloom_runner)
        def outlived() -> None:
            future = t.outlives_its_timeout.submit(str(shared_folder))
            future.wait()
            seen["state"] = future.state

        outlived(return_state=True)
        if Capability.ENFORCES_TIMEOUTS not in hooks.runners[-1].capabilities:
            pytest.skip("the runner does not declare ENFORCES_TIMEOUTS")
        state = seen["state"]
        if state.is_completed() and state.result() == "no shared filesystem":
            pytest.skip("the workers cannot see the test's folder")
        assert state.name == "TimedOut", state
        time.sleep(2.0)  # past when the task would have written its file
        assert not (shared_folder / "still-running").exists(), "the timed-out task went on running"

    # -- the same inside a task on every runner (version 6) ------------------------------------

    def test_the_run_context_is_the_same_on_every_runner(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def contextual(n: int, label: str = "ctx") -> Any:
            return t.run_context.submit().result()

        state = contextual(3, return_state=True)
        seen = state.result()
        assert seen["parameters"] == {"n": 3, "label": "ctx"}, "get_flow_run() in a task has the flow's parameters"
        assert seen["flow_name"] == "contextual"
        assert (seen["run_count"], seen["state_name"]) == (2, "Retrying"), seen
        assert seen["start_time"] is not None and seen["start_time"].tzinfo is not None
        assert seen["name"].startswith("run_context-")

    def test_prints_land_in_the_run_that_printed_them(self, taskloom_runner: Any, run_logs: _Capture) -> None:
        @flow(task_runner=taskloom_runner)
        def printing() -> Any:
            quiet = t.chatters.submit("quiet", 10, 0.02)
            loud = t.prints_slowly.submit("loud", 10, 0.02)
            return quiet.result(), loud.result(), loud.task_run.name

        quiet, loud, loud_name = printing()
        assert (quiet, loud) == ("quiet", "loud")
        printed = [r for r in run_logs.records if r.getMessage().startswith(("printed ", "chatter "))]
        loud_lines = [r for r in printed if r.getMessage() == "printed loud"]
        assert len(loud_lines) == 10, "every print of a log_prints task is one line of its run"
        misplaced = [
            (r.getMessage(), getattr(r, "task_run_name", None))
            for r in printed
            if (r.getMessage() == "printed loud" and getattr(r, "task_run_name", None) != loud_name)
            or (r.getMessage() == "chatter quiet" and getattr(r, "task_run_name", None) == loud_name)
        ]
        assert not misplaced, f"a print was logged as another run's line: {misplaced[:3]}"

    def test_keyboard_interrupt_raised_by_a_task_crashes_only_that_run(
        self, taskloom_runner: Any, hooks: _HookRecorder
    ) -> None:
        if self._concurrency(taskloom_runner) == "sequential":
            # Here a task runs in the flow's own thread, where KeyboardInterrupt is Ctrl-C:
            # as in Prefect, the run crashes and the interrupt ends the flow run.
            @flow(task_runner=taskloom_runner)
            def interrupted_here() -> None:
                t.interrupts.submit()

            with pytest.raises(KeyboardInterrupt):
                interrupted_here()
            [states] = hooks.states.values()
            assert states[-1][1] == "Crashed", states
            return

        @flow(task_runner=taskloom_runner)
        def interrupted_inside() -> Any:
            raising = t.interrupts.submit()
            raising.wait()
            return {"state": raising.state, "after": t.add.submit(2, 3).result()}

        outcome = interrupted_inside()
        state = outcome["state"]
        assert state.is_crashed() and state.message == "Task run crashed: KeyboardInterrupt", state
        assert outcome["after"] == 5, "the flow and the worker go on"

    def test_async_tasks_from_an_async_flow(self, taskloom_runner: Any) -> None:
        import asyncio

        @flow(task_runner=taskloom_runner)
        async def async_flow() -> Any:
            one = t.async_plus_one.submit(1)
            many = t.async_plus_one.map([10, 20])
            return one.result(), many.result()

        assert asyncio.run(async_flow()) == (2, [11, 21])

    # -- runs that end badly (version 5): every run reaches a final state --------------------

    def test_sys_exit_in_a_task_crashes_only_that_run(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def exits() -> Any:
            leaving = t.leaves.submit(3)
            leaving.wait()
            return {"state": leaving.state, "after": t.add.submit(1, 2).result()}

        outcome = exits(return_state=True).result(raise_on_failure=False)
        state = outcome["state"]
        assert state.is_crashed(), f"sys.exit() in a task must crash its run, got {state!r}"
        assert state.message == "Task run crashed: SystemExit: 3", state.message
        assert outcome["after"] == 3, "the flow (and the worker) must go on after sys.exit()"

    def test_a_result_that_cannot_be_pickled(self, taskloom_runner: Any) -> None:
        @flow(task_runner=taskloom_runner)
        def unsendable() -> Any:
            locked = t.gives_lock.submit()
            locked.wait()
            return {"state": locked.state, "after": t.add.submit(2, 2).result()}

        outcome = unsendable()
        state = outcome["state"]
        assert outcome["after"] == 4, "the worker must live on after a result it could not send"
        if self._concurrency(taskloom_runner) != "parallel":
            assert state.is_completed(), "a run in the flow's process has nothing to pickle"
            return
        assert state.is_failed() and state.name == "Failed", f"expected Failed, got {state!r}"
        message = state.message or ""
        assert "\n" not in message, f"one sentence, not a traceback: {message!r}"
        assert message.startswith(
            "Task 'gives_lock' returned a _thread.lock (inside its dict), which could not be sent back"
        ), message

    def test_a_cache_entry_that_cannot_be_loaded_is_a_miss(
        self, taskloom_runner: Any, shared_results: Any, run_logs: _Capture
    ) -> None:
        from taskloom.results import write_record

        key = f"conformance-{os.getpid()}-{id(shared_results)}"

        @flow(task_runner=taskloom_runner)
        def cached(value: int) -> Any:
            future = t.keyed.submit(key, value)
            future.wait()
            return {"value": future.result(), "state": future.state}

        first = cached(1)
        assert first["value"] == 1 and first["state"].name == "Completed"
        reference = first["state"].data
        # Replace the entry, through the storage the run used, by what a class renamed since
        # it was written leaves: a whole record (its checksum matches) whose pickle names a
        # module and class that no longer exist.
        gone = b"ctaskloom_conformance_gone\nRenamed\n)\x81."
        write_record(reference.storage, reference.key, "pickle", gone, None)

        second = cached(5)
        assert (second["value"], second["state"].name) == (5, "Completed"), "an unloadable entry must be a miss"
        warnings = [r.getMessage() for r in run_logs.records if r.levelno == logging.WARNING]
        [warning] = [w for w in warnings if key in w]
        assert "could not be loaded (ModuleNotFoundError: " in warning and "runs again and replaces it" in warning
        third = cached(7)
        assert (third["value"], third["state"].name) == (5, "Cached"), "the entry must have been replaced"

    def test_an_interrupted_flow_run_leaves_no_task_run_open(
        self, taskloom_runner: Any, shared_folder: Any, hooks: _HookRecorder
    ) -> None:
        import pathlib
        import time

        marker_dir = pathlib.Path(shared_folder)
        # A sequential runner runs each task inside submit: the body cannot interrupt one.
        seconds = 0.0 if self._concurrency(taskloom_runner) == "sequential" else 5.0

        @flow(task_runner=taskloom_runner)
        def interrupted() -> None:
            t.started_then_sleeps.map(str(marker_dir), range(6), seconds)  # type: ignore[arg-type]
            for _ in range(1200):  # until one run has started (at most a minute)
                if any(marker_dir.glob("started-*")):
                    break
                time.sleep(0.05)
            raise KeyboardInterrupt  # what Ctrl-C does in the flow's thread

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        assert hooks.flow_runs and hooks.flow_runs[-1][1] == "Cancelled"
        last = {name: states[-1][1] for name, states in hooks.states.items()}
        assert len(last) == 6, last
        open_runs = {name: state for name, state in last.items() if state not in ("Cancelled", "Crashed", "Completed")}
        assert not open_runs, (
            f"every run of an interrupted flow run must end (Cancelled, Crashed if cut off, or "
            f"Completed if it finished): {open_runs}"
        )

    # -- tasks that submit tasks (version 7) -----------------------------------------------

    def test_a_task_submits_runs_of_its_flow_run(
        self, taskloom_runner: Any, hooks: _HookRecorder, run_logs: _Capture
    ) -> None:
        """``.submit()`` and ``.map()`` inside a task, wherever it runs: the child runs are
        task runs of the same flow run, seen by hooks and logs as runs submitted in the flow's
        body are; their results, retries and failures reach the parent as usual."""
        seen: dict[str, Any] = {}

        @flow(task_runner=taskloom_runner)
        def nesting() -> None:
            seen["outcome"] = t.submits_tasks.submit(3).result()

        state = nesting(return_state=True)
        assert "outcome" in seen, f"the parent task run did not complete: {state!r} {state.message}"
        assert seen["outcome"] == {
            "one": 7,
            "mapped": 6,
            "retried": "succeeded after 2 retries",
            "failed": ("Failed", "ConformanceError"),
        }, "the parent must read its children's results and states"
        [parent] = [name for name in hooks.created if "/" not in name]
        children = [name for name in hooks.created if name != parent]
        assert len(children) == 6 and len(set(children)) == 6, hooks.created
        assert all(name.startswith(f"{parent}/") for name in children), (
            f"a run submitted inside a task run is named after it: {children}"
        )
        assert set(hooks.in_flow_run.values()) == {hooks.flow_run_ids[-1]}, (
            "the child runs must be task runs of the same flow run"
        )
        assert hooks.pids == {os.getpid()}, "lifecycle hooks must run in the flow's process"
        by_task: dict[str, list[list[str]]] = {}
        for name in children:
            by_task.setdefault(name.split("/")[-1].split("-")[0], []).append([new for _, new in hooks.states[name]])
        assert by_task["double"] == [["Pending", "Running", "Completed"]] * 4
        assert by_task["flaky"] == [
            ["Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed"]
        ]
        assert by_task["fail"] == [["Pending", "Running", "Failed"]]
        assert state.is_failed() and (state.message or "").startswith("1/7 states failed."), (
            f"a failed child counts in a flow that returns nothing, as any task run: {state.message}"
        )
        assert "child failure" in (state.message or "")
        finished = {
            getattr(r, "task_run_name", None): r.getMessage()
            for r in run_logs.records
            if getattr(r, "task_run_name", None) in children and r.getMessage().startswith("Finished in state")
        }
        assert set(finished) == set(children), "each child's log lines must reach the flow's process"
        created = {r.getMessage() for r in run_logs.records if r.getMessage().startswith("Created task run")}
        assert {f"Created task run {name!r} for task {name.split('/')[-1].split('-')[0]!r}" for name in children} <= created
