"""taskloom's conformance suite on the ``loky`` runner, and what only a process runner shows."""

from __future__ import annotations

import os

import pytest

from taskloom import flow, task
from taskloom.testing import RunnerConformance


class TestLoky(RunnerConformance):
    runner = "loky"


@task
def pid() -> int:
    return os.getpid()


@task
def die() -> None:
    os._exit(3)  # a worker that dies without a word, as one killed by the OOM killer would


def test_task_runs_in_another_process() -> None:
    @flow(task_runner="loky")
    def where() -> int:
        return pid.submit().result()

    assert where() != os.getpid()


def test_a_worker_that_dies_crashes_its_run_and_the_next_run_gets_a_fresh_pool() -> None:
    @flow(task_runner="loky")
    def dies() -> tuple[object, int]:
        future = die.submit()
        future.wait()
        return future.state, pid.submit().result()

    died, later_pid = dies()
    assert died.is_crashed(), f"a dead worker must crash its task run, got {died!r}"
    assert "TerminatedWorkerError" in (died.message or "")
    assert later_pid != os.getpid()


def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskloom.config import load_settings
    from taskloom.runners import resolve_task_runner

    monkeypatch.setenv("TASKLOOM_RUNNERS_LOKY_MAX_WORKERS", "1")
    runner = resolve_task_runner("loky", load_settings())
    assert runner.max_workers == 1 and runner.timeout == 300
