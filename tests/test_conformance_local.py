"""The first-party local runners held to the conformance kit."""

import pytest

from taskloom.testing import RunnerConformance


class TestSequential(RunnerConformance):
    runner = "sequential"


class TestConcurrent(RunnerConformance):
    runner = "concurrent"


class TestConcurrentBounded(RunnerConformance):
    """A pool of two threads: queued runs must still all finish, in any order."""

    # A zero-argument factory (a fresh runner per test), written as a lambda.
    runner = lambda: __import__("taskloom_local").ConcurrentTaskRunner(max_workers=2)  # noqa: E731


class TestProcesses(RunnerConformance):
    """Spawned worker processes: every task and result crosses a process boundary."""

    runner = "processes"
    many_tasks = 300


class TestSequentialWithMemoryStorage(RunnerConformance):
    """The runner kit reads results through whichever storage is configured, not its files."""

    runner = "sequential"

    @pytest.fixture(autouse=True)
    def _memory_storage(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TASKLOOM_RESULTS_STORAGE", "memory")
