"""`RunnerConformance`: what every task runner must do, as pytest tests.

Each test runs real flows on the runner under test and reads what a user reads: states,
results, logs and hook calls. Failures say which behaviour broke, in the runner's terms.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import flow, plugins
from taskloom.config import set_cli_values
from taskloom.states import UpstreamTaskError

from . import _tasks as t
from ._ending_cases import EndingBehaviour
from ._observers import _Capture, _captured, _class_attribute, _concurrency, _HookRecorder
from ._prefect_cases import PrefectBehaviour
from ._semantics_cases import SemanticsBehaviour

#: Bumped when a case is added: a runner passing version N passes every case up to N.
CONFORMANCE_VERSION = 7

# No case assumes that workers share the flow's files: tasks report through results and log
# lines, and persisted results go to `shared_results` (``--taskloom-shared-dir``), so the kit
# runs unchanged on a cluster of several hosts.


class _Basics:
    """Results, failures, inputs and what the flow's process sees; needs the fixtures of
    `RunnerConformance`."""

    #: How many no-op task runs `test_many_small_tasks` submits.
    many_tasks: int = 1000
    #: Seconds each of the overlapping tasks sleeps in `test_runs_overlap`, once both started.
    overlap_seconds: float = 1.0
    #: Seconds each of them waits for the other to start (a cluster may start a worker first).
    overlap_wait: float = 60.0

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

    def test_runs_overlap_when_the_runner_is_concurrent(self, taskloom_runner: Any, shared_folder: Path) -> None:
        seconds = self.overlap_seconds
        sequential = _concurrency(taskloom_runner) == "sequential"
        # Each run waits for the other to start (not on a sequential runner, where it cannot),
        # so a worker that is slow to start does not make two concurrent runs look serial.
        wait = 0.0 if sequential else self.overlap_wait

        @flow(task_runner=taskloom_runner)
        def two() -> Any:
            a = t.meets.submit(str(shared_folder), "a", "b", seconds, wait)
            b = t.meets.submit(str(shared_folder), "b", "a", seconds, wait)
            return a.result(), b.result()

        (met_a, start_a, end_a), (met_b, start_b, end_b) = two()
        overlap = min(end_a, end_b) > max(start_a, start_b)
        if sequential:
            assert not overlap, "a sequential runner ran two task runs at the same time"
        else:
            assert met_a and met_b and overlap, (
                "a concurrent or parallel runner ran two task runs one after the other "
                f"(each waited up to {wait:g} s for the other to start)"
            )

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


# pytest runs inherited cases base first (the reverse of the MRO): Prefect's rules, the basics,
# the engine's semantics, then how runs end, whose interrupted runs come last.
class RunnerConformance(EndingBehaviour, SemanticsBehaviour, _Basics, PrefectBehaviour):
    """Subclass it and set ``runner``; every test here must pass on your runner.

    ``runner`` is a registered name (``"dask"``), a runner instance (a fresh duplicate is
    used per flow run), or a zero-argument factory. Or override the ``taskloom_runner``
    fixture to return one of those, for a runner connected to a session-scoped cluster.
    """

    runner: Any = None

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
        with _captured() as capture:
            yield capture
