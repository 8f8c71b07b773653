"""The processes runner: what only a runner that owns its worker processes can promise."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskloom import flow, task
from taskloom_local.processes import ProcessTaskRunner

pytestmark = pytest.mark.slow


@task
def pid() -> int:
    return os.getpid()


@task
def die() -> None:
    os.kill(os.getpid(), 9)


@task(timeout_seconds=0.5)
def blocked_in_c(marker: str) -> None:
    time.sleep(6)  # one C call: a thread cannot be interrupted inside it, a process can be killed
    Path(marker).write_text("the timed-out task kept running")


def remember_init(value: str) -> None:
    os.environ["TASKLOOM_TEST_INIT"] = value


@task
def read_init() -> str | None:
    return os.environ.get("TASKLOOM_TEST_INIT")


def test_a_killed_worker_crashes_only_its_run() -> None:
    @flow(task_runner=ProcessTaskRunner(max_workers=2))
    def killing() -> dict[str, Any]:
        doomed = die.submit()
        doomed.wait()
        after = [pid.submit() for _ in range(4)]
        return {"doomed": doomed.state, "after": [f.result() for f in after]}

    result = killing()
    state = result["doomed"]
    assert state.is_crashed()
    assert "exited with code -9 while running the task" in state.message
    assert all(isinstance(p, int) and p != os.getpid() for p in result["after"]), "the pool replaced the worker"


def test_a_crashed_run_with_retries_runs_again() -> None:
    marker_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"taskloom-crash-{os.getpid()}-{time.time_ns()}"
    marker_dir.mkdir()

    @task(retries=1)
    def dies_once(folder: str) -> str:
        first = not any(Path(folder).iterdir())
        (Path(folder) / str(os.getpid())).touch()
        if first:
            os.kill(os.getpid(), 9)
        return "second attempt"

    @flow(task_runner=ProcessTaskRunner(max_workers=1))
    def retried() -> str:
        return dies_once.submit(str(marker_dir)).result()

    assert retried() == "second attempt"
    assert len(list(marker_dir.iterdir())) == 2, "two attempts, in two worker processes"


def test_timeout_stops_the_work_itself(tmp_path: Path) -> None:
    marker = tmp_path / "kept-running"
    runner = ProcessTaskRunner(max_workers=1)

    @flow(task_runner=runner)
    def timed() -> Any:
        future = blocked_in_c.submit(str(marker))
        future.wait()
        return {"state": future.state}

    state = timed()["state"]
    assert state.name == "TimedOut"
    time.sleep(6.5)
    assert not marker.exists(), "the worker process of a timed-out task must be stopped"


def test_initializer_runs_in_each_worker() -> None:
    @flow(task_runner=ProcessTaskRunner(max_workers=2, initializer=remember_init, initargs=("ready",)))
    def initialized() -> list[str | None]:
        return [f.result() for f in [read_init.submit() for _ in range(4)]]

    assert initialized() == ["ready"] * 4


def test_unpicklable_argument_is_one_sentence_naming_the_task() -> None:
    @flow(task_runner="processes")
    def sends_a_lock() -> Any:
        return {"state": takes_anything.submit(threading.Lock(), return_state=True)}

    state = sends_a_lock()["state"]
    assert state.is_failed()
    assert state.message.endswith(
        "Task 'takes_anything' cannot be sent to a worker process because its argument 'value' "
        "is a _thread.lock, which cannot be pickled: pass a value that pickles, or create it "
        "inside the task."
    )


@task
def takes_anything(value: Any) -> str:
    return type(value).__name__


SCRIPT = """
from taskloom import flow, task, get_run_logger

@task
def shout(word):
    get_run_logger().info("worker says %s", word)
    print(f"printed by {word}", flush=True)  # one write: two workers share the flow's stdout
    return word.upper()

@flow(task_runner="processes")
def script_flow():
    return [f.result() for f in shout.map(["a", "b"])]

if __name__ == "__main__":
    print("RESULT", script_flow())
"""


def test_script_tasks_travel_by_value_and_logs_reach_the_console(tmp_path: Path) -> None:
    script = tmp_path / "script_flow.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RESULT ['A', 'B']" in proc.stdout
    assert "printed by a" in proc.stdout, "a worker's prints reach the flow's console"
    lines = [line for line in proc.stderr.splitlines() if "worker says a" in line]
    assert len(lines) == 1 and "| INFO    | Task run 'shout-" in lines[0]


@task
def give_lock() -> Any:
    return threading.Lock()


def test_a_result_that_cannot_be_pickled_fails_and_the_worker_lives() -> None:
    @flow(task_runner=ProcessTaskRunner(max_workers=1))
    def locked() -> dict[str, Any]:
        before = pid.submit().result()
        lock = give_lock.submit()
        lock.wait()
        return {"before": before, "lock": lock.state, "after": pid.submit().result()}

    result = locked()
    state = result["lock"]
    assert state.is_failed() and state.name == "Failed", state
    assert state.message == (
        "Task 'give_lock' returned a _thread.lock, which could not be sent back from the worker "
        "(TypeError: cannot pickle '_thread.lock' object): return a value that pickles."
    )
    assert result["after"] == result["before"], "the worker that ran it goes on"


def _refuse_to_load() -> None:
    raise RuntimeError("this object cannot be rebuilt here")


class LoadsNowhere:
    """Pickles fine in the worker; rebuilding it in the flow's process raises."""

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


@task
def unloadable() -> LoadsNowhere:
    return LoadsNowhere()


@task
def slow(marker: str, seconds: float) -> float:
    Path(marker).touch()
    time.sleep(seconds)
    return seconds


def test_a_result_that_cannot_be_loaded_fails_its_run_and_the_flow_goes_on() -> None:
    @flow(task_runner=ProcessTaskRunner(max_workers=1))
    def loading() -> dict[str, Any]:
        bad = unloadable.submit()
        bad.wait()
        return {"bad": bad.state, "after": pid.submit().result()}

    result = loading()
    state = result["bad"]
    assert state.is_failed()
    assert state.message.startswith("Task 'unloadable': its result could not be loaded in the flow's process")
    assert "this object cannot be rebuilt here" in state.message
    assert isinstance(result["after"], int), "the pool's dispatcher kept running"


def test_cancel_all_cancels_queued_and_running_runs(tmp_path: Path) -> None:
    from taskloom import plugins
    from taskloom.testing._observers import _HookRecorder

    hooks = _HookRecorder()
    plugins.register(hooks, name="cancel-all-recorder")
    try:

        @flow(task_runner=ProcessTaskRunner(max_workers=1))
        def cancelling() -> Any:
            started = tmp_path / "started"
            running, queued = slow.submit(str(started), 30), slow.submit(str(tmp_path / "never"), 30)
            while not started.exists():
                time.sleep(0.05)
            hooks.runners[-1].cancel_all()
            return running, queued

        state = cancelling(return_state=True)
    finally:
        plugins.unregister(hooks)
    running, queued = state.result(raise_on_failure=False)
    assert running.is_cancelled() and queued.is_cancelled()
    assert state.is_cancelled() and state.message == "2/2 states cancelled."


def test_runners_with_the_same_settings_are_equal() -> None:
    from taskloom_local.runners import ConcurrentTaskRunner, SequentialTaskRunner

    runner = ProcessTaskRunner(max_workers=2, initializer="os:getpid")
    assert runner.duplicate() == runner and runner == ProcessTaskRunner(2, "os:getpid")
    assert runner != ProcessTaskRunner(max_workers=3) and runner != ConcurrentTaskRunner(max_workers=2)
    assert ConcurrentTaskRunner(4).duplicate() == ConcurrentTaskRunner(4) != ConcurrentTaskRunner(5)
    assert SequentialTaskRunner() == SequentialTaskRunner().duplicate()
    assert len({ConcurrentTaskRunner(4), ConcurrentTaskRunner(4)}) == 1, "equal runners hash equal"


@task
def parameters_seen() -> dict[str, Any]:
    from taskloom.context import get_flow_run

    flow_run = get_flow_run()
    assert flow_run is not None
    return dict(flow_run.parameters)


def test_flow_parameters_too_large_or_unpicklable_stay_in_the_flow_process() -> None:
    from taskloom.context import ParameterLeftBehind

    @flow(task_runner=ProcessTaskRunner(max_workers=1))
    def with_parameters(small: str, large: bytes, lock: Any) -> Any:
        return parameters_seen.submit().result()

    seen = with_parameters("hi", b"x" * 100_000, threading.Lock())
    assert seen["small"] == "hi"
    large, lock = seen["large"], seen["lock"]
    assert isinstance(large, ParameterLeftBehind) and isinstance(lock, ParameterLeftBehind)
    assert repr(large) == (
        "<flow parameter 'large' (bytes) stayed in the flow's process: 100,009 bytes pickled; "
        "pass it to the task as an argument>"
    )
    assert "it cannot be pickled (TypeError)" in repr(lock)
