"""Conformance cases for how runs end and where they run (versions 5 to 7), on every runner.

Timeouts a runner enforces, the run context inside a task, runs that end badly (an interrupt,
``sys.exit``, a result that cannot be pickled or loaded, an interrupted flow run) and tasks
that submit tasks. `RunnerConformance` includes these.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from taskloom import flow

from . import _tasks as t
from ._observers import _Capture, _concurrency, _HookRecorder

__all__ = ["EndingBehaviour"]


class EndingBehaviour:
    """Cases about how runs end and where they run; needs the fixtures of `RunnerConformance`
    (``taskloom_runner``, ``hooks``, ``run_logs``, ``shared_folder``, ``shared_results``)."""

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
        if _concurrency(taskloom_runner) == "sequential":
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
        if _concurrency(taskloom_runner) != "parallel":
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
        seconds = 0.0 if _concurrency(taskloom_runner) == "sequential" else 5.0

        @flow(task_runner=taskloom_runner)
        def interrupted() -> None:
            t.started_then_sleeps.map(str(marker_dir), range(6), seconds)  # type: ignore[arg-type]
            for _ in range(1200):  # until one run has started (at most a minute)
                if any(marker_dir.glob("started-*")):
                    break
                time.sleep(0.05)
            raise KeyboardInterrupt  # what Ctrl-C does in the flow's thread

        try:
            with pytest.raises(KeyboardInterrupt):
                interrupted()
        finally:
            # Runs in worker processes outlive the interrupt; they must not hold the workers
            # through the next cases.
            (marker_dir / "stop").touch()
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
