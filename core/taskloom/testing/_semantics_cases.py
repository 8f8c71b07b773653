"""Conformance cases for task semantics (version 2) and where data lives, on every runner.

Retries, timeouts, caching, persisted results, hooks, logs, ``allow_failure``, async tasks and
tag limits are written once in the engine and the driver; these cases prove that a runner
changes none of them. `RunnerConformance` includes these.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import taskloom
from taskloom import flow

from . import _tasks as t
from ._observers import _Capture, _HookRecorder

__all__ = ["SemanticsBehaviour"]


class SemanticsBehaviour:
    """Cases for the engine's semantics; needs the fixtures of `RunnerConformance`."""

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
