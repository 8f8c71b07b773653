"""What taskloom-history records of flows a user runs, read back through its own API."""

from __future__ import annotations

import os
import threading

import pytest
from history_helpers import History

from taskloom import flow, task


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def boom(message: str) -> None:
    raise ValueError(message)


_attempts: dict[str, int] = {}


@task(retries=2, retry_delay_seconds=0)
def flaky(key: str) -> str:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] < 2:
        raise RuntimeError(f"attempt {_attempts[key]} fails")
    return "done"


@flow
def child(n: int) -> int:
    return add.submit(n, 100).result()


@flow(task_runner="concurrent")
def parent(n: int = 3) -> int:
    futures = [add.submit(i, y=1) for i in range(n)]
    boom.submit("it broke")
    flaky.submit(f"{os.getpid()}-{threading.get_ident()}")
    child(7)
    return sum(f.result() for f in futures)


def test_a_flow_run_and_its_task_runs_are_recorded(history: History) -> None:
    assert parent(3) == 6
    run = history.only_flow_run()
    assert (run.flow_name, run.state_name, run.task_runner) == ("parent", "Completed", "concurrent")
    assert run.parameters == "n=3"
    assert run.pid == os.getpid() and run.end_time is not None and run.end_time >= run.start_time
    assert (run.task_run_count, run.failed_count) == (5, 1)

    tasks = history.by_task(run)
    assert sorted(tasks) == sorted(
        [f"add-{add.task_key.split('-')[-1]}-{i}" for i in range(3)]
        + [n for n in tasks if n.startswith(("boom-", "flaky-"))]
    )
    added = [t for t in tasks.values() if t.task_name == "add"]
    assert sorted(t.parameters for t in added) == ["x=0, y=1", "x=1, y=1", "x=2, y=1"]
    for t in added:
        assert t.state_name == "Completed" and t.attempts == 1
        assert t.start_time is not None and t.end_time is not None and t.created <= t.start_time <= t.end_time
        host, pid, thread = t.worker.split("/", 2)
        assert host == os.uname().nodename and int(pid) == os.getpid() and thread

    [failed] = [t for t in tasks.values() if t.task_name == "boom"]
    assert failed.state_type == "FAILED" and "it broke" in failed.message
    assert 'raise ValueError(message)' in failed.traceback

    [retried] = [t for t in tasks.values() if t.task_name == "flaky"]
    assert retried.state_name == "Completed" and retried.attempts == 2
    assert [s.name for s in retried.states] == ["Running", "AwaitingRetry", "Retrying", "Completed"]
    assert all(s.worker for s in retried.states if s.type == "RUNNING")


def test_subflow_runs_are_linked_to_their_parent(history: History) -> None:
    parent(1)
    top = history.only_flow_run()
    [sub] = [r for r in history.flow_runs() if r.parent_flow_run_id is not None]
    assert sub.parent_flow_run_id == top.id and sub.flow_name == "child" and sub.parameters == "n=7"
    everything = history.task_runs(top, with_subflows=True)
    assert [t.parameters for t in everything if t.flow_run_id == sub.id] == ["x=7, y=100"]


def test_a_failed_flow_run_keeps_its_message_and_traceback(history: History) -> None:
    @flow
    def failing() -> None:
        boom("flow body fails")

    state = failing(return_state=True)
    assert state.is_failed()
    run = history.only_flow_run()
    assert run.state_name == "Failed" and "flow body fails" in (run.message or "")
    assert "ValueError" in (run.traceback or "")


def test_futures_among_parameters_show_the_run_they_stand_for(history: History) -> None:
    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @flow
    def summed() -> int:
        return total.submit([add.submit(1), add.submit(2)]).result()

    assert summed() == 3
    [t] = [t for t in history.task_runs(history.only_flow_run()) if t.task_name == "total"]
    assert t.parameters is not None and t.parameters.startswith("values=[<future of add-")


def test_every_runner_in_the_flow_process_is_named(history: History) -> None:
    @flow(task_runner="sequential")
    def one_by_one() -> int:
        return add(1, 2)

    one_by_one()
    run = history.only_flow_run()
    assert run.task_runner == "sequential"
    [t] = history.task_runs(run)
    assert t.worker is not None and t.worker.endswith("/" + threading.main_thread().name)


@pytest.mark.slow
def test_processes_runner_records_the_worker_processes(history: History) -> None:
    @flow(task_runner="processes")
    def spread() -> list[int]:
        return [f.result() for f in add.map(range(4))]

    assert spread() == [0, 1, 2, 3]
    tasks = history.task_runs(history.only_flow_run())
    pids = {int(t.worker.split("/")[1]) for t in tasks if t.worker}
    assert len(tasks) == 4 and pids and os.getpid() not in pids


def test_history_can_be_turned_off(in_tmp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_HISTORY_ENABLED", "false")
    parent(1)
    assert not (in_tmp / ".taskloom" / "history.db").exists()


def test_history_path_is_configurable(in_tmp, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / "taskloom.toml").write_text('[history]\npath = "runs/history.sqlite"\n')
    parent(1)
    assert History(in_tmp / "runs" / "history.sqlite").only_flow_run().flow_name == "parent"
    assert not (in_tmp / ".taskloom" / "history.db").exists()


def test_flows_in_several_threads_share_one_writer(history: History) -> None:
    @flow
    def small(i: int) -> int:
        return add.submit(i).result()

    threads = [threading.Thread(target=small, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = history.flow_runs()
    assert sorted(r.parameters for r in runs) == [f"i={i}" for i in range(4)]
    assert all(r.state_name == "Completed" and r.task_run_count == 1 for r in runs)


def test_a_run_whose_input_failed_is_recorded_as_not_ready(history: History) -> None:
    @flow
    def blocked() -> str:
        add.submit(boom.submit("upstream fails"))
        return "returned"

    assert blocked() == "returned"
    tasks = {t.task_name: t for t in history.task_runs(history.only_flow_run())}
    waiting = tasks["add"]
    assert waiting.state_type == "PENDING" and waiting.state_name == "NotReady"
    assert "did not reach a 'COMPLETED' state" in (waiting.message or "")
    assert waiting.attempts == 0 and waiting.start_time is None and waiting.end_time is not None


def test_a_loop_of_flows_opens_the_file_once_and_lets_go_when_idle(history: History) -> None:
    # Opening the file, starting the writer and folding SQLite's write-ahead log back in
    # cost 2 to 5 ms: once for a loop of flow runs, not once per run.
    @flow
    def tiny(i: int) -> int:
        return add.submit(i).result()

    earlier = set(threading.enumerate())  # other tests' writers, closing on their own
    writers: set[threading.Thread] = set()
    for i in range(5):
        tiny(i)
        assert len(history.flow_runs()) == i + 1  # recorded as soon as the flow returned
        writers |= {
            t for t in threading.enumerate()
            if t.name.startswith("taskloom-history") and t not in earlier
        }
    [writer] = writers
    writer.join(timeout=15)
    assert not writer.is_alive(), "the writer closes the file once no flow run uses it"
    assert not history.path.with_name(history.path.name + "-wal").exists()
    assert [r.parameters for r in history.flow_runs()] == [f"i={i}" for i in reversed(range(5))]


def test_a_task_run_that_runs_long_is_shown_running_before_it_ends(history: History) -> None:
    # The writer shows a run that started over a second ago, so `taskloom runs show` sees
    # work in progress; its final row replaces that one when it ends.
    release = threading.Event()

    @task
    def slow(x: int) -> int:
        release.wait(60)
        return x

    @flow
    def waits() -> list[str]:
        future = slow.submit(5)
        add.submit(1).result()
        seen: list[str] = []
        for _ in range(600):  # up to a minute
            runs = [r for r in history.flow_runs() if r.flow_name == "waits"]
            shown = [t for run in runs for t in history.task_runs(run) if t.task_name == "slow"]
            seen = [f"{t.state_name} {t.parameters} {bool(t.worker)}" for t in shown]
            if seen or release.wait(0.1):
                break
        release.set()
        future.result()
        return seen

    assert waits() == ["Running x=5 True"]
    [slow_run] = [t for t in history.task_runs(history.only_flow_run()) if t.task_name == "slow"]
    assert (slow_run.state_name, slow_run.parameters, slow_run.attempts) == ("Completed", "x=5", 1)
    assert slow_run.worker and slow_run.start_time is not None and slow_run.end_time is not None


def test_a_run_waiting_to_retry_is_not_shown_running_again(history: History) -> None:
    # While a run waits out its retry delay, the writer's once-a-second walk over open runs
    # must not show its ended attempt as running once more (nor count it twice).
    second = threading.Event()
    attempts: list[int] = []

    @task(retries=1, retry_delay_seconds=3)
    def once_more() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt")
        second.set()
        return "done"

    @flow
    def retries() -> list[str]:
        future = once_more.submit()
        seen: list[str] = []
        while not second.wait(0.1):
            runs = [r for r in history.flow_runs() if r.flow_name == "retries"]
            seen += [f"{t.state_name} {t.attempts}" for run in runs for t in history.task_runs(run)]
        future.result()
        return seen

    assert "Running 2" not in retries()
    [run] = history.task_runs(history.only_flow_run())
    assert (run.state_name, run.attempts) == ("Completed", 2)

