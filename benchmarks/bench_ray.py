"""Per-task overhead of RayTaskRunner beside raw ``ray.remote`` + ``ray.get``, in one run.

Both sides run on the same private local Ray (two CPUs, 127.0.0.1), started once: the
benchmark process holds the connection through a `RayTaskRunner` it enters itself, and the
flows' runners use that open connection, as a flow inside a process already connected to
Ray does. Each taskloom case times N no-op task runs through a flow, minus the same flow
with no task (flow start-up is not counted); each raw case does the same work with
``ray.remote`` functions and ``ray.get``. The two sides alternate five times and each keeps
its best, after a warm-up that starts the workers.

    python benchmarks/bench_ray.py [N]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance: no token file
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from taskloom import flow, task


def noop(x: Any = None) -> Any:
    return x


noop_task = task(noop, name="noop")


def _time(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _submit(count: int) -> None:
    futures = [noop_task.submit(i) for i in range(count)]
    for f in futures:
        f.result()


def _map(count: int) -> None:
    for f in noop_task.map(range(count)):
        f.result()


def _chain(count: int) -> None:
    if not count:
        return
    future = noop_task.submit(0)
    for _ in range(count - 1):
        future = noop_task.submit(future)
    future.result()


def _flow(body: Callable[[int], None]) -> Callable[[int], Any]:
    from taskloom_ray import RayTaskRunner

    @flow(task_runner=RayTaskRunner())
    def bench(count: int) -> None:
        body(count)

    return bench


def _raw_cases() -> dict[str, Callable[[int], None]]:
    import ray

    remote_noop = ray.remote(noop)

    def submitted(n: int) -> None:
        ray.get([remote_noop.remote(i) for i in range(n)])

    def chained(n: int) -> None:
        ref = remote_noop.remote(0)
        for _ in range(n - 1):
            ref = remote_noop.remote(ref)
        ray.get(ref)

    return {"submitted": submitted, "chain": chained}


def run(n: int = 1000, repeat: int = 5) -> list[dict[str, Any]]:
    """Rows of per-task cost in microseconds, taskloom beside raw Ray, on one Ray instance.

    The two sides alternate, ``repeat`` times, and each keeps its best time: on a busy
    machine the best of several runs is the least disturbed one.
    """
    from taskloom_ray import RayTaskRunner

    holder = RayTaskRunner(init_kwargs={"num_cpus": 2})
    holder.__enter__()
    try:
        raw = _raw_cases()
        raw["submitted"](200)  # start the workers, import the modules there
        _flow(_submit)(200)
        chain_n = max(2, n // 5)
        cases = [
            (f"{n} submitted", _submit, n, raw["submitted"]),
            (f"{n}-element map", _map, n, raw["submitted"]),
            (f"{chain_n}-long chain of futures", _chain, chain_n, raw["chain"]),
        ]
        rows = []
        for case, body, count, raw_case in cases:
            bench = _flow(body)
            ours = base = empty = float("inf")
            for _ in range(repeat):
                base = min(base, _time(lambda: raw_case(count)))  # noqa: B023
                empty = min(empty, _time(lambda: bench(0)))  # noqa: B023
                ours = min(ours, _time(lambda: bench(count)))  # noqa: B023
            ours = (ours - empty) / count
            base = base / count
            rows.append(
                {
                    "runner": "ray",
                    "case": case,
                    "engine": "ray.remote + ray.get",
                    "taskloom_us_per_task": round(ours * 1e6, 1),
                    "raw_us_per_task": round(base * 1e6, 1),
                    "ratio": round(ours / base, 2) if base > 0 else float("nan"),
                }
            )
        return rows
    finally:
        holder.__exit__(None, None, None)


if __name__ == "__main__":
    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000):
        print(row)
