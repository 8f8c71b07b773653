"""Tasks the conformance suite runs: importable by name on any worker with taskloom installed.

None of them touches the test's folder: a worker may sit on another host, without the flow's
files. What a test must see of them comes back as results and log lines.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from taskloom import get_run_logger, task
from taskloom.context import get_task_run


class ConformanceError(Exception):
    """The exception `fail` raises, so tests can tell it from any other."""


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def identity(value: Any) -> Any:
    return value


@task
def total(values: Any) -> int:
    if isinstance(values, dict):
        values = list(values.values())
    return sum(values)


@task
def noop() -> None:
    return None


@task
def fail(message: str) -> None:
    raise ConformanceError(message)


@task
def interval(seconds: float) -> tuple[float, float, int]:
    """Sleep, and return when it started and ended and in which process."""
    started = time.time()
    time.sleep(seconds)
    return started, time.time(), os.getpid()


@task
def where() -> str:
    """Where this run runs, as a Running state's ``worker`` should say it."""
    return f"{os.uname().nodename}/{os.getpid()}/{threading.current_thread().name}"


@task
def stamped(value: Any, seconds: float = 0.0) -> tuple[Any, float, float]:
    started = time.time()
    time.sleep(seconds)
    return value, started, time.time()


@task
def log_lines(tag: str, count: int) -> str:
    logger = get_run_logger()
    for i in range(count):
        logger.info("line %d of %s", i, tag)
    logger.warning("warned %s", tag)
    return tag


_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


@task(retries=2, retry_delay_seconds=0)
def flaky() -> str:
    """Fails on its first two attempts.

    Counted in the worker's memory per task run: the engine retries a run where it runs, so
    every attempt of one run is in the same process, whatever the runner.
    """
    run = get_task_run()
    key = str(run.id) if run is not None else ""
    with _attempts_lock:
        attempts = _attempts.get(key, 0)
        _attempts[key] = attempts + 1
    if attempts < 2:
        raise RuntimeError(f"attempt {attempts} fails")
    with _attempts_lock:
        _attempts.pop(key, None)
    return f"succeeded after {attempts} retries"


@task(timeout_seconds=0.5)
def too_slow() -> str:
    for _ in range(200):  # Python-level work, so a thread can be interrupted too
        time.sleep(0.05)
    return "should have timed out"


@task(cache_policy=None)
def counted(value: int) -> int:
    """Says in its run's log that it ran (a cached run does not run, so says nothing)."""
    get_run_logger().info("counted computed %d", value)
    return value * 10


@task(log_prints=True)
def prints(word: str) -> str:
    print("printed", word)
    return word


@task(task_run_name="greet-{name}")
def greet(name: str) -> str:
    return f"hello {name}"


def _log_state(task: Any, task_run: Any, state: Any) -> None:
    get_run_logger().info("hook saw %s for %s", state.name, task_run.name)


@task(on_completion=[_log_state], on_failure=[_log_state])
def hooked(fail: bool) -> str:
    if fail:
        raise ValueError("hooked failure")
    return "ok"


@task
async def async_double(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.01)
    return 2 * x


@task
def blob(mib: int) -> bytes:
    """A result large enough to stay on a worker of a runner that keeps results there."""
    return b"x" * (mib << 20)


@task
def size(data: bytes) -> int:
    return len(data)


@task(timeout_seconds=0.5)
def outlives_its_timeout(marker_dir: str) -> str:
    """Sleeps past its timeout, then leaves a file: if the file appears, the work went on."""
    import time

    if not os.path.isdir(marker_dir):
        return "no shared filesystem"  # the worker cannot see the test's folder: nothing to check
    time.sleep(1.5)
    with open(os.path.join(marker_dir, "still-running"), "w") as file:
        file.write(str(os.getpid()))
    return "finished"
