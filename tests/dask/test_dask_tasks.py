"""Task runs on the session's LocalCluster: options, data between tasks, pickling, clients, logs."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest

from taskloom import flow, get_run_logger, task
from taskloom.testing import _tasks as t
from taskloom_dask import DaskTaskRunner, get_dask_client

pytestmark = [pytest.mark.dask, pytest.mark.slow]


@task
def where() -> tuple[str, int]:
    """The address of the Dask worker running this task run, and its process."""
    from distributed import get_worker

    return get_worker().address, os.getpid()


@task
def payload(size: int) -> bytes:
    return b"x" * size


@task
def measure(data: bytes) -> tuple[int, str, int]:
    from distributed import get_worker

    return len(data), get_worker().address, os.getpid()


@task
def make_lock() -> Any:
    return threading.Lock()


def _square(x: int) -> int:
    return x * x


@task
def sum_of_squares(n: int) -> tuple[int, int]:
    import dask.bag

    with get_dask_client() as client:
        direct = sum(client.gather(client.map(_square, range(n), pure=False)))
        via_bag = dask.bag.from_sequence(range(n), npartitions=2).map(_square).sum().compute()
    return direct, via_bag


@pytest.fixture
def runner(local_cluster: Any) -> DaskTaskRunner:
    return DaskTaskRunner(address=local_cluster.scheduler_address)


@pytest.fixture
def workers(local_cluster: Any) -> list[str]:
    return sorted(local_cluster.scheduler_info["workers"])


def test_runner_options_reach_client_submit(runner: DaskTaskRunner, workers: list[str]) -> None:
    pinned = where.with_options(runner_options={"workers": [workers[1]], "priority": 10})

    @flow(task_runner=runner)
    def pinning() -> list[tuple[str, int]]:
        return [f.result() for f in [pinned.submit() for _ in range(4)]]

    ran_on = {address for address, _ in pinning()}
    assert ran_on == {workers[1]}


def test_runner_options_under_its_name_reach_dask_and_others_do_not(runner: DaskTaskRunner, workers: list[str]) -> None:
    # The ray table would fail Client.submit ("num_gpus"); under its own name it never gets there.
    pinned = where.with_options(runner_options={"dask": {"workers": [workers[0]]}, "ray": {"num_gpus": 1}})

    @flow(task_runner=runner)
    def pinning() -> list[tuple[str, int]]:
        return [f.result() for f in [pinned.submit() for _ in range(4)]]

    assert {address for address, _ in pinning()} == {workers[0]}


def test_unknown_runner_options_fail_the_run_naming_them(runner: DaskTaskRunner) -> None:
    odd = t.noop.with_options(runner_options={"gpus": 1})

    @flow(task_runner=runner)
    def odd_options() -> Any:
        future = odd.submit()
        future.wait()
        return future.state

    state = odd_options(return_state=True)
    assert state.is_failed()
    assert "gpus" in state.message and "Client.submit" in state.message


def test_futures_pass_between_workers_as_dask_futures(runner: DaskTaskRunner) -> None:
    size = 8 * 1024 * 1024

    @flow(task_runner=runner)
    def chain() -> Any:
        big = payload.submit(size)
        after = measure.submit(big)
        after.wait()
        # The downstream Dask task depends on the upstream one on the scheduler: Dask moved
        # the data between workers; the driver passed a future, not the bytes.
        up_key, down_key = big.native.dask_future.key, after.native.dask_future.key
        with get_dask_client() as client:
            deps = client.run_on_scheduler(
                lambda dask_scheduler: [d.key for d in dask_scheduler.tasks[down_key].dependencies]
            )
        return after.result(), deps, up_key

    (length, address, pid), deps, up_key = chain()
    assert length == size
    assert pid != os.getpid() and address.startswith("tcp://127.0.0.1:")
    assert deps == [up_key]


def test_map_over_futures_runs_in_one_batch(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def mapped() -> list[int]:
        firsts = t.add.map(list(range(20)), 1)
        return [f.result() for f in t.add.map(firsts, t.add.submit(0, 100))]

    assert mapped() == [i + 101 for i in range(20)]


def test_an_unpicklable_argument_fails_that_run_in_one_sentence(runner: DaskTaskRunner) -> None:
    lock = threading.Lock()
    seen: dict[str, Any] = {}

    @flow(task_runner=runner)
    def with_lock() -> None:
        seen["bad"] = t.identity.submit(lock)
        seen["mapped"] = t.identity.map([1, {"nested": lock}, 3])
        seen["ok"] = t.add.submit(1, 2)

    state = with_lock(return_state=True)
    assert state.is_failed() and state.message.startswith("2/5 states failed."), state.message
    bad_state = seen["bad"].state
    assert bad_state.is_failed()
    message = bad_state.message
    assert "Task 'identity'" in message and "_thread.lock" in message, message
    assert "argument 'value'" in message and "\n" not in message
    mapped_states = [f.state for f in seen["mapped"]]
    assert [s.is_completed() for s in mapped_states] == [True, False, True]
    assert "holds a _thread.lock" in (mapped_states[1].message or "")
    assert [f.result() for f in (seen["mapped"][0], seen["mapped"][2])] == [1, 3]
    assert seen["ok"].result() == 3


def test_an_unpicklable_result_fails_the_run(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def returns_lock() -> Any:
        future = make_lock.submit()
        future.wait()
        return future.state

    state = returns_lock(return_state=True)
    assert state.is_failed(), state
    assert "could not be sent back" in state.message and "pickle" in state.message


def test_get_dask_client_inside_a_task(runner: DaskTaskRunner) -> None:
    @flow(task_runner=runner)
    def nested() -> tuple[int, int]:
        return sum_of_squares.submit(10).result()

    expected = sum(i * i for i in range(10))
    assert nested() == (expected, expected)


def test_get_dask_client_in_a_task_called_in_the_flow(runner: DaskTaskRunner) -> None:
    @task
    def scheduler_address() -> str:
        with get_dask_client() as client:
            return str(client.scheduler.address)

    @flow(task_runner=runner)
    def direct() -> str:
        return scheduler_address()

    assert direct() == runner.address


def test_get_dask_client_outside_a_dask_flow_says_so() -> None:
    with pytest.raises(RuntimeError, match="DaskTaskRunner"), get_dask_client():
        pass


@task
def logs_then_waits(key: str) -> bool:
    """Log a line, then wait (up to 60 s) until the flow says, through the scheduler, that the
    line reached it."""
    from distributed import get_client

    get_run_logger().info("started, waiting for the flow to see this line")
    client = get_client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if client.get_metadata(key, default=False):
            return True
        time.sleep(0.05)
    return False


def test_log_lines_arrive_while_the_task_still_runs(runner: DaskTaskRunner) -> None:
    seen = threading.Event()
    arrived: list[str] = []

    class Arrival(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("started, waiting"):
                arrived.append(record.getMessage())
                seen.set()

    def tell_the_task(client: Any, key: str) -> None:
        # Not from the handler: it runs on the client's event loop, which a call would block.
        if seen.wait(60):
            client.set_metadata(key, True)

    handler = Arrival()
    logging.getLogger("taskloom").addHandler(handler)
    try:

        @flow(task_runner=runner)
        def long_task() -> bool:
            name = f"line-arrived-{os.getpid()}-{time.monotonic_ns()}"
            with get_dask_client() as client:  # the flow run's own client
                threading.Thread(target=tell_the_task, args=(client, name), daemon=True).start()
            return logs_then_waits.submit(name).result()  # type: ignore[no-any-return]

        told_in_time = long_task()
    finally:
        logging.getLogger("taskloom").removeHandler(handler)
    assert told_in_time, "a worker's log line must reach the flow while the task runs"
    assert len(arrived) == 1, "the line must arrive once, live or with the outcome, not both"


def test_an_interrupted_flow_cancels_its_dask_tasks(runner: DaskTaskRunner) -> None:
    seen: dict[str, Any] = {}

    @flow(task_runner=runner)
    def interrupted() -> None:
        seen["sleeper"] = sleeper = t.interval.submit(2.0)
        while not sleeper.state.is_running() and not sleeper.done():
            time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    state = seen["sleeper"].state
    # Seen running, then cut off by the interrupt: Crashed, never left Running.
    assert state.is_crashed(), state
    assert state.message == "Task run was cut off: the flow run was interrupted while it ran."


def test_run_history_names_the_dask_worker_processes(runner: Any, in_tmp: Any) -> None:
    import taskloom_history as history

    @flow(task_runner=runner)
    def spread() -> list[tuple[str, int]]:
        return [f.result() for f in [where.submit() for _ in range(6)]]

    places = spread()
    with history.connect(in_tmp / ".taskloom" / "history.db", create=False) as conn:
        [run] = history.recent_flow_runs(conn)
        tasks = history.task_runs(conn, [run.id])
    assert run.task_runner == "dask" and len(tasks) == 6
    recorded = sorted(int(t.worker.split("/")[1]) for t in tasks)
    assert recorded == sorted(pid for _, pid in places), "each run's worker is the process that ran it"
    assert os.getpid() not in recorded


@task(timeout_seconds=60)
def timed_sum_of_squares(n: int) -> int:
    with get_dask_client() as client:
        return sum(client.gather(client.map(_square, range(n), pure=False)))


def test_get_dask_client_in_a_timed_task_fails_with_one_sentence(runner: DaskTaskRunner) -> None:
    # A timed task runs on the engine's helper thread; seceding from there used to hang the
    # run until its timeout. It must fail at once, saying why and what to do.
    @flow(task_runner=runner)
    def timed() -> Any:
        future = timed_sum_of_squares.submit(4)
        future.wait()
        return {"state": future.state}

    state = timed()["state"]
    assert state.is_failed() and state.name == "Failed", state
    assert "get_dask_client() cannot be used in a task with timeout_seconds on Dask" in (state.message or "")
