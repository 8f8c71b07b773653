"""Task and flow semantics that live in the flow's process, and the bad input they reject."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import INPUTS, TASK_SOURCE, _execution, flow, get_run_logger, task
from taskloom.runners import ConcurrentTaskRunner, TaskRunner, run_task_call, upstream_handles


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TASKLOOM_RESULTS_PATH", str(tmp_path / "results"))
    return tmp_path


# -- bad input: one sentence naming the task and the option --------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"retry_delay_seconds": ["soon"]}, TypeError, "Task 'f': retry_delay_seconds must be a number, a list of numbers or a callable such as exponential_backoff(backoff_factor=2), got ['soon'] (list of str)."),
        ({"timeout_seconds": -1}, ValueError, "Task 'f': timeout_seconds must be a number of seconds greater than 0, got -1."),
        ({"retries": -2}, ValueError, "Task 'f': retries must be a whole number of at least 0, got -2."),
        ({"task_run_name": "f-{town}"}, ValueError, "Task 'f': the run name template 'f-{town}' names 'town', which is not a parameter of f(city)."),
        ({"on_failure": ["not callable"]}, TypeError, "Task 'f': every on_failure hook must be a function, got 'not callable'."),
        ({"retrys": 2}, TypeError, "@task got unknown option 'retrys' for task 'f'. Options: name, description, "),
    ],
)
def test_bad_task_options_fail_at_definition(options: dict[str, Any], error: type, message: str) -> None:
    def f(city: str) -> str:
        return city

    with pytest.raises(error) as info:
        task(**options)(f)
    assert str(info.value).startswith(message)


def test_bad_flow_options_fail_at_definition() -> None:
    with pytest.raises(ValueError, match=r"Flow 'report': the run name template 'report-\{when\}' names 'when'"):

        @flow(name="report", flow_run_name="report-{when}")
        def report(day: str) -> None: ...


def test_run_time_mistakes_are_that_run_s_failed_state() -> None:
    def boom(context: Any, parameters: Any) -> str:
        raise KeyError("no key")

    @task(cache_key_fn=boom)
    def keyed(x: int) -> int:
        return x

    @task(persist_result=True, result_serializer="json")
    def not_json() -> object:
        return object()

    @task(persist_result=True, result_serializer="yaml")
    def unknown_serializer() -> int:
        return 1

    @flow(task_runner="sequential")
    def mistakes() -> dict[str, Any]:
        return {
            "key": keyed(1, return_state=True),
            "json": not_json(return_state=True),
            "serializer": unknown_serializer(return_state=True),
        }

    states = mistakes()
    assert states["key"].message == "Task 'keyed': cache_key_fn raised KeyError: 'no key'"
    assert states["json"].message.startswith("Task 'not_json': its result object could not be serialized with 'json': TypeError:")
    assert states["serializer"].message.startswith("Task 'unknown_serializer': Unknown serializer 'yaml'. Installed serializers: ")


# -- retries ---------------------------------------------------------------------------------


def test_retry_delays_and_condition(run_logs: Any) -> None:
    attempts: list[float] = []

    def only_value_errors(task: Any, task_run: Any, state: Any) -> bool:
        return isinstance(state.exception, ValueError)

    @task(retries=3, retry_delay_seconds=[0.1, 0.2], retry_condition_fn=only_value_errors)
    def unstable() -> None:
        attempts.append(time.monotonic())
        raise (ValueError if len(attempts) < 3 else KeyError)("no luck")

    @flow(task_runner="sequential")
    def retrying() -> Any:
        return {"state": unstable(return_state=True)}

    state = retrying()["state"]
    assert state.is_failed() and isinstance(state.exception, KeyError)
    assert len(attempts) == 3, "the KeyError on the third attempt is not retried"
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2
    assert sum("Received non-final state 'AwaitingRetry' when proposing final state 'Failed'" in m for m in run_logs.messages()) == 2


def test_exponential_backoff_and_jitter() -> None:
    from taskloom._worker import retry_delay

    backoff = taskloom.exponential_backoff(backoff_factor=0.5)
    assert backoff(4) == [0.5, 1.0, 2.0, 4.0]
    jittery = task(retries=3, retry_delay_seconds=backoff, retry_jitter_factor=0.5)(lambda: None)
    delays = [retry_delay(jittery, 2) for _ in range(200)]
    assert 1.0 <= min(delays) < max(delays) <= 3.0


def test_flow_retries_run_the_body_again(run_logs: Any) -> None:
    calls: list[int] = []

    @flow(retries=1)
    def shaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time")
        return len(calls)

    assert shaky() == 2
    assert any("will attempt to run again" in m for m in run_logs.messages())


def test_crashed_run_is_retried_by_the_driver() -> None:
    class LosesFirstWorker(TaskRunner):
        """Reports the first attempt of each run as lost, as a cluster does for a dead worker."""

        name = "loses-first"
        concurrency = "sequential"

        def __init__(self) -> None:
            self.lost: set[str] = set()

        def submit(self, call: Any) -> Future[Any]:
            native: Future[Any] = Future()
            if call.task_run.name not in self.lost:
                self.lost.add(call.task_run.name)
                native.set_exception(ConnectionError("worker lost"))
            else:
                native.set_result(run_task_call(call, *upstream_handles(call, lambda n: False)))
            return native

    @task(retries=1)
    def survives() -> str:
        return "ran on the second worker"

    @task
    def no_retries() -> str:
        return "never"

    crashed: list[str] = []

    @flow(task_runner=LosesFirstWorker())
    def lossy() -> dict[str, Any]:
        hooked = no_retries.with_options(on_crashed=[lambda t, r, s: crashed.append(s.message)])
        return {"ok": survives.submit(), "lost": hooked.submit()}

    result = lossy()
    ok, lost = result["ok"], result["lost"]  # the runs' final states, as in Prefect
    assert ok.result() == "ran on the second worker"
    assert lost.is_crashed() and lost.message == "Task run crashed: ConnectionError: worker lost"
    assert crashed == ["Task run crashed: ConnectionError: worker lost"]


# -- timeouts --------------------------------------------------------------------------------


def test_flow_timeout() -> None:
    @flow(timeout_seconds=0.3)
    def forever() -> None:
        for _ in range(100):
            time.sleep(0.05)

    state = forever(return_state=True)
    assert state.name == "TimedOut" and state.message == "Flow run exceeded timeout of 0.3 second(s)"


def test_async_task_timeout() -> None:
    cancelled = threading.Event()

    @task(timeout_seconds=0.2)
    async def sleepy() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @flow
    def runs_it() -> Any:
        return sleepy.submit().wait() and None

    state = runs_it(return_state=True)
    assert state.is_failed() and "exceeded timeout of 0.2 second(s)" in state.message
    assert cancelled.wait(10), "an async task is cancelled at its timeout"


# -- caching ---------------------------------------------------------------------------------


def test_cache_policies_expiration_and_refresh(tmp_path: Path) -> None:
    runs: list[int] = []

    @task(cache_policy=INPUTS + TASK_SOURCE, cache_expiration=datetime.timedelta(seconds=3))
    def expensive(x: int) -> int:
        runs.append(x)
        return x * 2

    @flow
    def cached(x: int, refresh: bool = False) -> tuple[int, str]:
        t = expensive.with_options(refresh_cache=True) if refresh else expensive
        future = t.submit(x)
        return future.result(), future.state.name

    assert cached(1) == (2, "Completed")
    assert cached(1) == (2, "Cached")
    assert cached(2) == (4, "Completed"), "other inputs, other key"
    assert cached(1, refresh=True) == (2, "Completed")
    with pytest.MonkeyPatch.context() as clock:  # three seconds later, without waiting them
        later = time.time() + 3.1
        clock.setattr(_execution, "_now", lambda: later)
        assert cached(1) == (2, "Completed"), "an expired entry is not used"
    assert runs == [1, 2, 1, 1]


def test_cache_key_fn_and_task_input_hash() -> None:
    seen = []

    @task(cache_key_fn=lambda ctx, params: f"by-user-{params['user']}")
    def profile(user: str, noise: int) -> str:
        seen.append(noise)
        return f"profile of {user}"

    @task(cache_key_fn=taskloom.task_input_hash)
    def hashed(values: set[str]) -> int:
        seen.append(len(values))
        return len(values)

    @flow
    def uses_keys() -> list[Any]:
        return [profile(user="ada", noise=1), profile(user="ada", noise=2), hashed({"a", "b"}), hashed({"b", "a"})]

    assert uses_keys() == ["profile of ada", "profile of ada", 2, 2]
    assert seen == [1, 2], "the second call of each is a cache hit"


def test_tampered_result_is_reported_and_not_loaded(tmp_path: Path, run_logs: Any) -> None:
    @task(cache_policy=INPUTS)
    def value(x: int) -> int:
        return x + 1

    @flow
    def once() -> tuple[int, str]:
        future = value.submit(1)
        return future.result(), future.state.name

    assert once() == (2, "Completed")
    [record] = (tmp_path / "results" / "cache").iterdir()
    record.write_bytes(record.read_bytes()[:-1] + b"X")
    assert once() == (2, "Completed"), "a tampered entry is not trusted: the task runs again"
    assert any("does not match its checksum" in m for m in run_logs.messages())


CACHE_SCRIPT = """
import sys
from taskloom import flow, task, INPUTS

@task(cache_policy=INPUTS)
def slow_square(x):
    print("COMPUTED", flush=True)
    return x * x

@flow(task_runner="sequential")
def square(x: int):
    f = slow_square.submit(x)
    print("STATE", f.state.name if f.wait() else "?", f.result(), flush=True)

square(int(sys.argv[1]))
"""


def test_cache_is_shared_by_separate_processes(tmp_path: Path) -> None:
    script = tmp_path / "cache_flow.py"
    script.write_text(CACHE_SCRIPT)
    env = {**os.environ, "TASKLOOM_RESULTS_PATH": str(tmp_path / "shared")}
    first = subprocess.run([sys.executable, str(script), "9"], capture_output=True, text=True, env=env, timeout=60)
    second = subprocess.run([sys.executable, str(script), "9"], capture_output=True, text=True, env=env, timeout=60)
    assert "COMPUTED" in first.stdout and "STATE Completed 81" in first.stdout, first.stderr
    assert "COMPUTED" not in second.stdout and "STATE Cached 81" in second.stdout, second.stderr


# -- structure: subflows, nested submits, tags, async ---------------------------------------------


def test_subflow_state_counts_in_the_parent(run_logs: Any) -> None:
    @flow(task_runner="sequential")
    def child(fail: bool) -> str:
        if fail:
            raise ValueError("child failed")
        return "child ok"

    @flow
    def parent() -> None:
        child(False)
        child(True, return_state=True)

    state = parent(return_state=True)
    assert state.is_failed() and state.message.startswith("1/2 states failed.")
    assert "First failure, subflow " in state.message and "child failed" in state.message
    assert sum(m.startswith("Created subflow run ") for m in run_logs.messages()) == 2


def test_nested_submits_do_not_deadlock_a_one_thread_pool() -> None:
    @task
    def leaf(x: int) -> int:
        return x + 1

    @task
    def branch(n: int) -> int:
        return sum(f.result() for f in leaf.map(range(n)))

    @flow(task_runner=ConcurrentTaskRunner(max_workers=1))
    def nested() -> int:
        return branch.submit(5).result(timeout=30)

    assert nested() == 15


def test_tags_context_manager() -> None:
    @task(tags=["own"])
    def tagged() -> frozenset[str]:
        run = taskloom.get_task_run()
        assert run is not None
        return run.tags

    @flow
    def with_tags() -> frozenset[str]:
        with taskloom.tags("db", "nightly"):
            return tagged()

    assert with_tags() == frozenset({"own", "db", "nightly"})


def test_zero_concurrency_limit_fails_the_run(in_tmp: Path) -> None:
    (in_tmp / "taskloom.toml").write_text("[concurrency_limits]\nfrozen = 0\n")

    @task(tags=["frozen"])
    def never() -> None: ...

    @flow
    def blocked() -> Any:
        return never.submit()

    state = blocked(return_state=True)
    assert state.is_failed()
    assert "Concurrency limit of tag 'frozen' is 0" in state.message


def test_the_first_failure_named_is_the_first_run_to_fail_when_its_end_frees_a_tag_slot(
    in_tmp: Path,
) -> None:
    # `second` waits for the slot `first` holds; `first` fails, and ending it hands the slot
    # to `second`, which runs (and fails) at once on the sequential runner.
    (in_tmp / "taskloom.toml").write_text("[concurrency_limits]\nslot = 1\n")

    @task(tags=["slot"])
    def second() -> None:
        raise ValueError("second failed")

    @task(tags=["slot"])
    def first() -> None:
        second.submit()
        raise ValueError("first failed")

    @flow(task_runner="sequential")
    def both() -> None:
        first.submit()

    state = both(return_state=True)
    assert state.is_failed()
    assert "2/2 states failed" in state.message
    assert "First failure, task run 'first-" in state.message and "first failed" in state.message


def test_async_flow_awaits_async_tasks_and_calls_sync_ones() -> None:
    @task
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 3

    @task
    def add(a: int, b: int) -> int:
        return a + b

    @flow
    async def async_flow() -> int:
        a = await fetch(1)
        b = fetch.submit(2).result()
        get_run_logger().info("async flow")
        return add(a, b)

    assert asyncio.run(async_flow()) == 9


# -- cancellation ----------------------------------------------------------------------------

CANCEL_SCRIPT = """
import time
from taskloom import flow, task

@task
def long(i):
    time.sleep(0.5)

@flow
def cancellable():
    futures = [long.submit(i) for i in range(6)]
    print("SUBMITTED", flush=True)
    for f in futures:
        f.wait()

cancellable()
"""


@pytest.mark.slow
def test_sigterm_cancels_the_flow_and_exits_non_zero(tmp_path: Path) -> None:
    script = tmp_path / "cancel.py"
    script.write_text(CANCEL_SCRIPT)
    env = {**os.environ, "TASKLOOM_RUNNERS_CONCURRENT_MAX_WORKERS": "1", "TASKLOOM_TASK_RUNNER": "concurrent"}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "SUBMITTED"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "Finished in state Cancelled('Flow run was cancelled: KeyboardInterrupt (signal 15).')" in stderr
    assert "Finished in state Cancelled('Task run was cancelled: the flow run was interrupted before it finished.')" in stderr


def test_waiting_with_timeouts() -> None:
    @task
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @flow
    def waits() -> dict[str, Any]:
        slow, fast = nap.submit(1.5), nap.submit(0.0)
        done, not_done = taskloom.wait([slow, fast], timeout=0.5)
        with pytest.raises(TimeoutError, match=r"Task run 'nap-\w+-0' did not finish within 0.1 seconds"):
            slow.result(timeout=0.1)
        first = []
        with pytest.raises(TimeoutError, match=r"^1 \(of 2\) futures unfinished$"):
            for future in taskloom.as_completed([slow, fast], timeout=0.5):
                first.append(future.result())
        return {"done": done, "not_done": not_done, "first": first, "fast": fast, "slow": slow}

    result = waits()
    assert result["done"] == {result["fast"]} and result["not_done"] == {result["slow"]}
    assert result["first"] == [0.0]


def test_many_waiters_on_one_run_all_wake_and_a_negative_timeout_does_not_wait() -> None:
    gate = threading.Event()

    @task
    def held() -> str:
        gate.wait(30)
        return "out"

    @flow(task_runner="threads")
    def waiters() -> tuple[bool, list[Any]]:
        future = held.submit()
        early = future.wait(timeout=-1)  # as threading.Event: no wait, no error
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(future.result())) for _ in range(5)]
        for thread in threads:
            thread.start()
        gate.set()
        for thread in threads:
            thread.join(30)
        return early, results

    assert waiters() == (False, ["out"] * 5)


def test_cache_keys_are_the_same_in_every_process() -> None:
    code = "from taskloom.caching import stable_hash; print(stable_hash({'a', 'b', 'c', 'd'}, {'x': frozenset({1, 2})}))"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in range(4)
    }
    assert len(keys) == 1, "a set's key must not depend on the process's string hashing"


# -- what a run leaves behind --------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["sequential", "concurrent"])
def test_finished_task_runs_are_freed_without_the_garbage_collector(runner: str) -> None:
    # A cycle between a future, its runner's handle and its call would leave every task run
    # (its futures, states and result) to the cyclic collector, whose full passes cost a
    # flow of many small tasks a third of its time.
    import gc
    import weakref

    seen: list[weakref.ref[Any]] = []

    class Pair:  # a result that can be followed by a weak reference, as its state cannot
        def __init__(self, x: int) -> None:
            self.items = [x, x]

    @task
    def double(x: int) -> Pair:
        return Pair(x)

    @flow(task_runner=runner)
    def many() -> int:
        futures = [double.submit(i) for i in range(50)]
        futures += double.map(range(50))
        seen.extend(weakref.ref(f) for f in futures)
        seen.extend(weakref.ref(f.result()) for f in futures)
        return sum(len(f.result().items) for f in futures)

    gc.collect()
    gc.disable()
    try:
        assert many() == 200
        alive = [ref() for ref in seen if ref() is not None]
    finally:
        gc.enable()
    assert len(seen) == 200
    assert alive == []


def test_a_forked_process_reports_its_own_pid_as_the_worker() -> None:
    # Where a run ran is taken once per thread; a child forked after a flow ran in this
    # thread (a pre-forking server) must not report its parent's pid.
    import warnings

    workers: dict[Any, str] = {}

    class _Watch:
        @taskloom.hookimpl
        def taskloom_task_run_state_changed(self, task_run: Any, old: Any, new: Any) -> None:
            if new.is_running():
                workers[task_run.id] = new.worker

    @task
    def where() -> int:
        return os.getpid()

    @flow(task_runner="sequential")
    def here() -> str:
        future = where.submit()
        return f"{future.result()} {workers[future.task_run.id]}"

    manager = taskloom.plugins.get_plugin_manager()
    watch = _Watch()
    manager.register(watch)
    try:
        pid, worker = here().split()
        assert pid == worker.split("/")[1] == str(os.getpid())
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork with threads
            child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                os.write(write, here().encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            pid, worker = pipe.read().split()
        os.waitpid(child, 0)
    finally:
        manager.unregister(watch)
    assert pid == worker.split("/")[1] == str(child)


class _SettlesOnItsOwnThread(TaskRunner):
    """Runs each call on a thread it never joins, as a runner whose engine calls back does."""

    name = "own-thread"
    concurrency = "concurrent"

    def submit(self, call: Any) -> Future[Any]:
        native: Future[Any] = Future()
        handles = upstream_handles(call, lambda h: isinstance(h, Future))
        threading.Thread(target=lambda: native.set_result(run_task_call(call, *handles)), daemon=True).start()
        return native


@pytest.mark.parametrize("runner", ["sequential", "threads", "processes", _SettlesOnItsOwnThread()])
def test_the_flow_run_ends_after_its_runs_done_callbacks(runner: Any) -> None:
    # A slow callback: were the flow's end to wait only for final states, it would overtake it.
    seen: list[str] = []

    def slow(future: Any) -> None:
        time.sleep(0.2)
        seen.append(f"callback {future.state.name}")

    @task
    def pause(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @flow(task_runner=runner)
    def waits() -> None:
        future = pause.submit(0.1)
        future.add_done_callback(slow)
        future.wait()
        pause.submit(0.1).add_done_callback(slow)  # not waited for

    waits()
    assert seen == ["callback Completed", "callback Completed"]
