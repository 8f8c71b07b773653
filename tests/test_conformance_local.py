"""The first-party local runners held to the conformance kit."""

from taskloom.testing import RunnerConformance


class TestSequential(RunnerConformance):
    runner = "sequential"


class TestConcurrent(RunnerConformance):
    runner = "concurrent"


class TestConcurrentBounded(RunnerConformance):
    """A pool of two threads: queued runs must still all finish, in any order."""

    def runner(self):  # a factory: a fresh runner per test
        from taskloom.runners import ConcurrentTaskRunner

        return ConcurrentTaskRunner(max_workers=2)


class TestProcesses(RunnerConformance):
    """Spawned worker processes: every task and result crosses a process boundary."""

    runner = "processes"
    many_tasks = 300
