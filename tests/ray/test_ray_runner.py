"""RayTaskRunner in the test process, connected to the session head: what a Ray user expects."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskloom import flow, task
from taskloom.testing import _tasks as t

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _overlap(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    return min(a[1], b[1]) > max(a[0], b[0])


# -- parallel, in Ray worker processes --------------------------------------------------------


def test_two_tasks_run_at_once_in_ray_workers(head_runner: Any) -> None:
    @flow(task_runner=head_runner)
    def two() -> Any:
        a, b = t.interval.submit(1.0), t.interval.submit(1.0)
        return a.result(), b.result()

    a, b = two()
    assert _overlap(a, b), "two sleeping tasks on a two-CPU head must overlap"
    assert {a[2], b[2]}.isdisjoint({os.getpid()}), "tasks must run in Ray workers, not the flow"
    assert a[2] != b[2], "two tasks at once need two worker processes"


# -- per-task Ray options ---------------------------------------------------------------------


def test_runner_options_reach_ray(head_runner: Any) -> None:
    """The head has one 'custom' resource: two tasks that each need it cannot overlap.

    Given per runner name: Ray gets its own table; Dask's, which Ray would refuse, never reaches it.
    """
    exclusive = t.interval.with_options(
        runner_options={"ray": {"resources": {"custom": 1}}, "dask": {"workers": ["tcp://10.0.0.7:1"]}}
    )

    @flow(task_runner=head_runner)
    def serialized() -> Any:
        a, b = exclusive.submit(0.5), exclusive.submit(0.5)
        return a.result(), b.result()

    a, b = serialized()
    assert not _overlap(a, b), "resources={'custom': 1} must reach Ray's .options()"


def test_remote_options_reach_ray(head_runner: Any) -> None:
    from taskloom_ray import remote_options

    @flow(task_runner=head_runner)
    def serialized() -> Any:
        with remote_options(num_cpus=2):
            a, b = t.interval.submit(0.5), t.interval.submit(0.5)
        return a.result(), b.result()

    a, b = serialized()
    assert not _overlap(a, b), "num_cpus=2 on a two-CPU head leaves room for one task at a time"


@task
def assigned() -> dict[str, float]:
    import ray

    return {k: round(v, 3) for k, v in ray.get_runtime_context().get_assigned_resources().items()}


def test_task_runner_options_win_over_remote_options(head_runner: Any) -> None:
    from taskloom_ray import remote_options

    one_cpu = assigned.with_options(runner_options={"num_cpus": 1})

    @flow(task_runner=head_runner)
    def merged() -> Any:
        with remote_options(num_cpus=2, resources={"custom": 0.5}):
            with remote_options(resources={"custom": 0.25}):
                inner = one_cpu.submit()
            outer = assigned.submit()
        plain = assigned.submit()
        return inner.result(), outer.result(), plain.result()

    inner, outer, plain = merged()
    assert inner == {"CPU": 1.0, "custom": 0.25}
    assert outer == {"CPU": 2.0, "custom": 0.5}
    assert plain == {"CPU": 1.0}


def test_options_ray_refuses_fail_the_task_with_one_sentence(head_runner: Any) -> None:
    bogus = t.noop.with_options(runner_options={"no_such_option": 1})

    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def refused() -> None:
        seen["state"] = bogus.submit(return_state=True)

    refused(return_state=True)
    message = seen["state"].message
    assert seen["state"].is_failed()
    assert (
        "Task 'noop' has the runner option 'no_such_option', which Ray does not accept" in message
    )
    assert "\n" not in message


@task
def pid_and_env(name: str) -> tuple[int, str | None]:
    return os.getpid(), os.environ.get(name)


def test_ray_remote_options_such_as_max_calls_and_runtime_env_apply(head_runner: Any) -> None:
    """max_calls goes to ray.remote (Ray refuses it in .options()); the others to .options()."""
    from taskloom_ray import remote_options

    @flow(task_runner=head_runner)
    def fresh_workers() -> Any:
        pids = []
        with remote_options(max_calls=1):
            for _ in range(3):  # one after the other: a reused worker would repeat its pid
                pids.append(pid_and_env.submit("TASKLOOM_RAY_TEST").result()[0])
        with remote_options(runtime_env={"env_vars": {"TASKLOOM_RAY_TEST": "set by runtime_env"}}):
            env = pid_and_env.submit("TASKLOOM_RAY_TEST").result()[1]
        return pids, env

    pids, env = fresh_workers()
    assert len(set(pids)) == 3, "max_calls=1: each run gets a worker process of its own"
    assert env == "set by runtime_env"


# -- futures travel as ObjectRefs ---------------------------------------------------------------


def test_futures_reach_ray_as_object_refs(
    head_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from taskloom_ray import RayTaskRunner

    seen: list[list[Any]] = []
    real_remote_for = RayTaskRunner._remote_for

    class Spy:
        def __init__(self, remote: Any) -> None:
            self._remote = remote

        def remote(self, *args: Any) -> Any:
            seen.append(list(args[1:]))  # after the pickled call
            return self._remote.remote(*args)

    monkeypatch.setattr(
        RayTaskRunner, "_remote_for", lambda self, call: Spy(real_remote_for(self, call))
    )

    @flow(task_runner=head_runner)
    def chained() -> Any:
        first = t.add.submit(1, 2)
        second = t.add.submit(first, 10)
        third = t.total.submit([first, second])
        return third.result()

    assert chained() == 16
    assert seen[0] == []
    assert [type(a) for a in seen[1]] == [ray.ObjectRef]
    assert [type(a) for a in seen[2]] == [ray.ObjectRef, ray.ObjectRef]


# -- failures ---------------------------------------------------------------------------------


@task(runner_options={"max_retries": 0})
def killed() -> None:
    os.kill(os.getpid(), 9)


def test_killed_worker_gives_crashed_and_downstream_not_ready(head_runner: Any) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def dies() -> None:
        victim = killed.submit()
        after = t.identity.submit(victim)
        seen["victim"], seen["after"] = victim, after

    started = time.monotonic()
    state = dies(return_state=True)
    assert time.monotonic() - started < 60, "a killed worker must not hang the flow"
    victim, after = seen["victim"].state, seen["after"].state
    assert victim.is_crashed(), f"expected Crashed, got {victim!r}"
    assert "was lost before it finished" in victim.message and "killed-" in victim.message
    assert after.name == "NotReady" and "killed-" in after.message
    assert state.is_failed()


def test_runs_end_crashed_when_the_runners_collector_breaks(
    head_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread that settles runs from Ray fails: its runs, and later ones, end Crashed."""
    import ray

    def broken_wait(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ray.wait broke")

    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def broken() -> None:
        monkeypatch.setattr(ray, "wait", broken_wait)
        try:
            seen["first"] = first = t.identity.submit(1)
            first.wait(60)
            seen["later"] = later = t.identity.submit(2)
            later.wait(60)
        finally:
            monkeypatch.undo()

    broken(return_state=True)
    for name in ("first", "later"):
        state = seen[name].state
        assert state.is_crashed(), f"{name}: expected Crashed, got {state!r}"
        assert "ray.wait broke" in state.message


def test_unpicklable_argument_fails_with_one_sentence(head_runner: Any) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def sends_a_lock() -> None:
        seen["state"] = t.identity.submit({"guard": threading.Lock()}, return_state=True)

    sends_a_lock(return_state=True)
    state = seen["state"]
    assert state.is_failed()
    message = state.message
    assert "\n" not in message
    assert "Task 'identity' cannot be sent to Ray workers" in message
    assert "argument 'value' holds a _thread.lock, which cannot be pickled" in message


def test_unpicklable_result_fails_with_one_sentence(head_runner: Any) -> None:
    @task
    def returns_a_lock() -> Any:
        return threading.Lock()

    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def gets_a_lock() -> None:
        seen["state"] = returns_a_lock.submit(return_state=True)

    gets_a_lock(return_state=True)
    state = seen["state"]
    assert state.is_failed()
    assert state.message.startswith(
        "Task 'returns_a_lock' returned a _thread.lock, which could not be sent back from the worker"
    )
    assert "\n" not in state.message


# -- starting and connecting ----------------------------------------------------------------


def test_address_that_does_not_answer_fails_fast_naming_it(ray_connected: Any) -> None:
    from taskloom_ray import RayTaskRunner

    address = f"127.0.0.1:{free_port()}"

    @flow(task_runner=RayTaskRunner(address, connect_timeout=3))
    def nowhere() -> None:
        t.noop.submit()

    started = time.monotonic()
    state = nowhere(return_state=True)
    assert time.monotonic() - started < 10
    assert state.is_crashed()
    assert f"No Ray instance answered at {address}" in state.message


def test_second_cluster_in_one_process_is_refused_by_name(ray_connected: Any) -> None:
    from taskloom_ray import RayTaskRunner

    with socket.socket() as other:  # something answers there, but this process is taken
        other.bind(("127.0.0.1", 0))
        other.listen()
        address = f"127.0.0.1:{other.getsockname()[1]}"

        @flow(task_runner=RayTaskRunner(address))
        def elsewhere() -> None:
            t.noop.submit()

        state = elsewhere(return_state=True)
    assert state.is_crashed()
    assert f"already connected to the Ray instance at {ray_connected.address}" in state.message


def test_missing_ray_gives_the_install_hint(
    ray_connected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskloom_ray import RayTaskRunner

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError

    @flow(task_runner=RayTaskRunner())
    def no_ray() -> None:
        t.noop.submit()

    state = no_ray(return_state=True)
    assert state.is_crashed()
    assert "pip install 'taskloom[ray]'" in state.message
    assert "Traceback" not in state.message


def test_runner_leaves_a_connection_it_did_not_open(head_runner: Any) -> None:
    import ray

    @flow(task_runner=head_runner)
    def quick() -> int:
        return t.add.submit(1, 1).result()

    job = ray.get_runtime_context().get_job_id()
    for _ in range(3):
        assert quick() == 2
        assert ray.is_initialized(), "the session's connection must stay open"
        assert ray.get_runtime_context().get_job_id() == job, "no flow may reconnect"


def test_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskloom.config import load_settings
    from taskloom.runners import resolve_task_runner

    monkeypatch.setenv("TASKLOOM_TASK_RUNNER", "ray")
    monkeypatch.setenv("TASKLOOM_RUNNERS_RAY_ADDRESS", "ray://127.0.0.1:10001")
    monkeypatch.setenv("TASKLOOM_RUNNERS_RAY_INIT_KWARGS", '{"num_cpus": 2}')
    monkeypatch.setenv("TASKLOOM_RUNNERS_RAY_CONNECT_TIMEOUT", "2.5")
    runner = resolve_task_runner(None, load_settings())
    assert type(runner).__name__ == "RayTaskRunner"
    assert runner.address == "ray://127.0.0.1:10001"
    assert runner.init_kwargs == {"num_cpus": 2}
    assert runner.connect_timeout == 2.5
    duplicate = runner.duplicate()
    assert (duplicate.address, duplicate.init_kwargs) == (runner.address, runner.init_kwargs)


# -- the engine's retries and timeouts on Ray ----------------------------------------------------


@task(retries=1, retry_delay_seconds=0)
def dies_once(marker: str) -> tuple[int, Any]:
    import ray

    path = Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts == 1:
        os.kill(os.getpid(), 9)
    return attempts, ray.get_runtime_context().get_assigned_resources().get("custom")


def test_lost_worker_is_retried_by_the_engine_not_by_ray(head_runner: Any, tmp_path: Path) -> None:
    import taskloom
    from taskloom import plugins

    states: list[str] = []

    class Recorder:
        @taskloom.hookimpl
        def taskloom_task_run_state_changed(self, task_run: Any, old: Any, new: Any) -> None:
            states.append(new.name)

    from taskloom_ray import remote_options

    @flow(task_runner=head_runner)
    def retried() -> Any:
        with remote_options(resources={"custom": 0.5}):
            future = dies_once.submit(str(tmp_path / "attempts"))
        return future.result()

    recorder = Recorder()
    plugins.register(recorder, name="ray-crash-retry-recorder")
    try:
        attempts, custom = retried()
        assert attempts == 2, "the run must be tried exactly twice: once lost, once by its retry"
        assert custom == 0.5, "the retry keeps the remote_options of the first submit"
    finally:
        plugins.unregister(recorder)
    assert "AwaitingRetry" in states and states[-1] == "Completed", states


@task(timeout_seconds=0.5)
def overruns(marker: str) -> None:
    try:
        time.sleep(3)  # in C: the engine's timeout cannot interrupt it, only its process's end
    finally:
        Path(marker).write_text("the work went on after the timeout")


def test_timed_out_work_is_stopped_with_its_worker(head_runner: Any, tmp_path: Path) -> None:
    marker = tmp_path / "overran"
    seen: dict[str, Any] = {}

    @flow(task_runner=head_runner)
    def timed() -> None:
        seen["state"] = overruns.submit(str(marker), return_state=True)

    timed(return_state=True)
    assert seen["state"].name == "TimedOut"
    time.sleep(4)
    assert not marker.exists(), "the worker that ran a timed-out task must be ended"


def test_loading_the_plugin_and_the_runner_class_does_not_import_ray() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from taskloom import plugins\n"
        "assert plugins.lookup('task_runner', 'ray').factory == 'taskloom_ray:RayTaskRunner'\n"
        "assert 'taskloom_ray.runner' not in sys.modules, 'registering must not load the runner'\n"
        "from taskloom.runners import RayTaskRunner\n"
        "from taskloom_ray import remote_options\n"
        "with remote_options(num_cpus=1):\n"
        "    RayTaskRunner('127.0.0.1:6379').duplicate()\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@task
def pid() -> int:
    return os.getpid()


def test_run_history_names_the_ray_worker_processes(head_runner: Any, in_tmp: Path) -> None:
    import taskloom_history as history

    @flow(task_runner=head_runner)
    def spread() -> list[int]:
        return [f.result() for f in [pid.submit() for _ in range(4)]]

    pids = spread()
    with history.connect(in_tmp / ".taskloom" / "history.db", create=False) as conn:
        [run] = history.recent_flow_runs(conn)
        tasks = history.task_runs(conn, [run.id])
    assert run.task_runner == "ray" and len(tasks) == 4
    assert sorted(int(t.worker.split("/")[1]) for t in tasks) == sorted(pids)
    assert os.getpid() not in pids
