"""Per-task overhead of the local runners beside a raw ThreadPoolExecutor, in one run.

Each case times N no-op tasks through a flow, minus the same flow with no tasks (so flow
start-up is not counted), and the same work done directly on the raw engine. The two
alternate: a round times a block of each, and the figures are medians over the rounds; the
ratio is the median of the rounds' own ratios. On a shared 2-core machine the raw executor
alone moves by a third from one minute to the next (12-18 µs a task), so a best-of-N of
each side, taken at different moments, gives a ratio that swings with it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")

from taskloom import flow, task


def noop(x: Any = None) -> Any:
    return x


noop_task = task(noop, name="noop")


ROUNDS = 15
BLOCK = 3


def _timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    for _ in range(BLOCK):
        fn()
    return time.perf_counter() - started


def _flow_cost(runner: str, body: Callable[[int], None], n: int) -> Callable[[], float]:
    """A round of the case on ``runner``: seconds per task, flow start-up subtracted."""

    @flow(task_runner=runner)
    def bench(count: int) -> None:
        body(count)

    bench(10)  # warm up, untimed
    return lambda: (_timed(lambda: bench(n)) - _timed(lambda: bench(0))) / (BLOCK * n)


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

    return (_timed(work) - _timed(empty)) / (BLOCK * n)


def _raw_chain(n: int) -> float:
    def work() -> None:
        with ThreadPoolExecutor() as pool:
            future = pool.submit(noop, 0)
            for _ in range(n - 1):
                future = pool.submit(lambda f: noop(f.result()), future)
            future.result()

    return _timed(work) / (BLOCK * n)


def _raw_direct(n: int) -> float:
    def work() -> None:
        for i in range(n):
            noop(i)

    return _timed(work) / (BLOCK * n)


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
            one_round = _flow_cost(runner, body, n)
            ours, base = [], []
            for _ in range(ROUNDS):
                ours.append(one_round())
                base.append(raw(n))
            ratios = [o / b for o, b in zip(ours, base, strict=True) if b > 0]
            rows.append(
                {
                    "runner": runner,
                    "case": case,
                    "engine": "ThreadPoolExecutor" if raw is not _raw_direct else "plain call",
                    "taskloom_us_per_task": statistics.median(ours) * 1e6,
                    "raw_us_per_task": statistics.median(base) * 1e6,
                    "ratio": statistics.median(ratios),
                    "ratio_range": (min(ratios), max(ratios)),
                }
            )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
