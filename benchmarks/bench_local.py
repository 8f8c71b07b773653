"""Per-task overhead of the local runners beside a raw ThreadPoolExecutor, in one run.

Each case times N no-op tasks through a flow, minus the same flow with no tasks (so flow
start-up is not counted), and the same work done directly on the raw engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")

from taskloom import flow, task


def noop(x: Any = None) -> Any:
    return x


noop_task = task(noop, name="noop")


def _best(fn: Callable[[], None], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _flow_cost(runner: str, body: Callable[[int], None], n: int) -> float:
    @flow(task_runner=runner)
    def bench(count: int) -> None:
        body(count)

    empty = _best(lambda: bench(0))
    full = _best(lambda: bench(n))
    return (full - empty) / n


def _submit(count: int) -> None:
    futures = [noop_task.submit(i) for i in range(count)]
    for f in futures:
        f.result()


def _call(count: int) -> None:
    for i in range(count):
        noop_task(i)


def _chain(count: int) -> None:
    future = noop_task.submit(0)
    for _ in range(count - 1 if count else 0):
        future = noop_task.submit(future)
    if count:
        future.result()


def _map(count: int) -> None:
    for f in noop_task.map(range(count)):
        f.result()


def _raw_submit(n: int) -> float:
    def work() -> None:
        with ThreadPoolExecutor() as pool:
            futures = [pool.submit(noop, i) for i in range(n)]
            for f in futures:
                f.result()

    def empty() -> None:
        with ThreadPoolExecutor():
            pass

    return (_best(work) - _best(empty)) / n


def _raw_chain(n: int) -> float:
    def work() -> None:
        with ThreadPoolExecutor() as pool:
            future = pool.submit(noop, 0)
            for _ in range(n - 1):
                future = pool.submit(lambda f: noop(f.result()), future)
            future.result()

    return _best(work) / n


def _raw_direct(n: int) -> float:
    def work() -> None:
        for i in range(n):
            noop(i)

    return _best(work) / n


CASES = [
    ("1000 submitted", _submit, 1000, _raw_submit),
    ("500 called directly", _call, 500, _raw_direct),
    ("200-long chain of futures", _chain, 200, _raw_chain),
    ("1000-element map", _map, 1000, _raw_submit),
]


def run() -> list[dict[str, Any]]:
    rows = []
    for runner in ("concurrent", "sequential"):
        for case, body, n, raw in CASES:
            ours = _flow_cost(runner, body, n)
            base = raw(n)
            rows.append(
                {
                    "runner": runner,
                    "case": case,
                    "engine": "ThreadPoolExecutor" if raw is not _raw_direct else "plain call",
                    "taskloom_us_per_task": ours * 1e6,
                    "raw_us_per_task": base * 1e6,
                    "ratio": ours / base if base > 0 else float("nan"),
                }
            )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
