"""Tasks the conformance suite runs: importable by name on any worker with taskloom installed.

None of them touches the test's folder: a worker may sit on another host, without the flow's
files. What a test must see of them comes back as results and log lines.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any

import attrs

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
def meets(folder: str, me: str, other: str, seconds: float, wait: float) -> tuple[bool, float, float]:
    """Say it started, wait up to ``wait`` seconds for ``other`` to start, then sleep ``seconds``:
    whether it met the other, and when it started and ended. Two such runs that both met ran at
    the same time, however long a worker took to start."""
    import pathlib

    here = pathlib.Path(folder)
    (here / me).touch()
    started = time.time()
    met = (here / other).exists()
    while not met and time.time() - started < wait:
        time.sleep(0.02)
        met = (here / other).exists()
    time.sleep(seconds)
    return met, started, time.time()


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


@task
def leaves(code: int) -> None:
    """Calls ``sys.exit(code)``: its run must end Crashed, and nothing else."""
    import sys

    sys.exit(code)


@task
def gives_lock() -> Any:
    """Returns a value that cannot be pickled (a lock)."""
    return {"lock": threading.Lock()}


def _key_parameter(context: Any, parameters: dict[str, Any]) -> str:
    return str(parameters["key"])


@task(cache_key_fn=_key_parameter)
def keyed(key: str, value: int) -> int:
    return value


@task
def started_then_sleeps(marker_dir: str, index: int, seconds: float) -> int:
    """Says it started (a file), then sleeps: a run an interrupt cuts off."""
    import pathlib

    folder = pathlib.Path(marker_dir)
    (folder / f"started-{index}").touch()
    for _ in range(int(seconds / 0.05)):  # Python-level, so a thread or Ray can interrupt it
        if (folder / "stop").exists():
            break  # the test is over: a worker process the interrupt could not stop is free again
        time.sleep(0.05)
    return index


@task
def double(x: int) -> int:
    return 2 * x


@task
def submits_tasks(n: int) -> dict[str, Any]:
    """Submits runs of its own flow run, wherever it runs, and reads them: one, a map, one
    that is retried and one that fails."""
    one = double.submit(n).result() + 1
    mapped = sum(double.map(range(n)).result())
    retried = flaky.submit().result()
    failing = fail.submit("child failure")
    failing.wait()
    state = failing.state
    return {
        "one": one,
        "mapped": mapped,
        "retried": retried,
        "failed": (state.name, type(state.result(raise_on_failure=False)).__name__),
    }


@task
def returns_state(kind: str, message: str) -> Any:
    """Returns a state made by hand: the run ends in it."""
    from taskloom import states

    if kind == "Completed":
        return states.Completed(message, data=message.upper())
    return getattr(states, kind)(message)


@dataclasses.dataclass
class Box:
    """A dataclass argument, with a future (or anything) inside."""

    value: Any
    label: str = "box"


@attrs.define
class AttrsBox:
    """An attrs argument, with a future (or anything) inside."""

    value: Any


@task
def unbox(box: Any) -> Any:
    """What a task receives inside a container argument, with the container's type."""
    return type(box).__name__, box.value


@task
def with_default(x: int, items: tuple[int, ...] = (1, 2)) -> tuple[int, tuple[int, ...]]:
    return x, items


@task
def keyword_total(base: int, **more: int) -> int:
    return base + sum(more.values())


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


try:  # pydantic is never a dependency of taskloom: the model exists only where it is installed
    import pydantic as _pydantic
except ImportError:  # pragma: no cover - depends on the environment
    _pydantic = None  # type: ignore[assignment]
else:

    class PydanticBox(_pydantic.BaseModel):
        """A pydantic argument, with a future (or anything) inside."""

        model_config = _pydantic.ConfigDict(arbitrary_types_allowed=True)
        value: Any


def pydantic_box() -> Any:
    """The pydantic model class (call only when pydantic is installed)."""
    return PydanticBox


@task(retries=1, retry_delay_seconds=0)
def run_context() -> dict[str, Any]:
    """What the run context says inside the task; the first attempt fails, the retry answers."""
    from taskloom.context import get_flow_run

    task_run = get_task_run()
    flow_run = get_flow_run()
    assert task_run is not None and flow_run is not None
    if task_run.run_count == 1:
        raise ConformanceError("first attempt")
    return {
        "parameters": dict(flow_run.parameters),
        "flow_run_id": flow_run.id,
        "flow_name": flow_run.flow_name,
        "run_count": task_run.run_count,
        "state_name": task_run.state_name,
        "start_time": task_run.start_time,
        "name": task_run.name,
    }


@task
def chatters(word: str, count: int, seconds: float) -> str:
    """Prints without asking for its prints to be logged, while other runs may capture theirs."""
    for _ in range(count):
        print("chatter", word)
        time.sleep(seconds)
    return word


@task(log_prints=True)
def prints_slowly(word: str, count: int, seconds: float) -> str:
    for _ in range(count):
        print("printed", word)
        time.sleep(seconds)
    return word


@task
def interrupts() -> None:
    raise KeyboardInterrupt


@task
async def async_plus_one(x: int) -> int:
    import asyncio

    await asyncio.sleep(0)
    return x + 1
