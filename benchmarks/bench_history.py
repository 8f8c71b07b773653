"""What recording run history costs per task on the thread runner (goal: at most +20%).

The same flows run without taskloom-history (the plugin disabled, so not even its hooks are
called) and with it, alternating in one process. A round is, for each, five flows of 1,000
tasks minus five with none; each figure is the median of the rounds, and "paired" is the
median of each round's on/off ratio. Wall-clock figures on a shared 2-core machine swing by
a quarter from one flow to the next, so a single best-of-N is not enough.
Beside wall time per task it reports the process's CPU time per task (all threads, the
history writer's included).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")

from bench_local import _map, _submit

from taskloom import flow, plugins

CASES = [("1000 submitted", _submit, 1000), ("1000-element map", _map, 1000)]
ROUNDS = 15
BLOCK = 5


def _use_history(enabled: bool, others: str) -> None:
    disabled = [name for name in others.split(",") if name]
    if not enabled:
        disabled.append("history")
    os.environ["TASKLOOM_DISABLE_PLUGINS"] = ",".join(disabled)
    plugins.reset()  # the next flow loads the entry points again, with or without history


def _flow(body: Callable[[int], None]) -> Any:
    @flow(task_runner="concurrent")
    def bench(count: int) -> None:
        body(count)

    return bench


def _one_round(bench: Any, n: int, enabled: bool, others: str) -> tuple[float, float]:
    """(wall, CPU) seconds per task over a block of flows of ``n`` tasks, minus as many empty
    flows. A block, not one flow: the garbage collector's full collections come every few
    thousand tasks, and a block of several thousand tasks pays its share of them."""
    _use_history(enabled, others)
    bench(10)  # loads the plugins again (with or without history) and warms up, untimed

    def timed(count: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(BLOCK):
            bench(count)
        return time.perf_counter() - wall, time.process_time() - cpu

    wall_full, cpu_full = timed(n)
    wall_empty, cpu_empty = timed(0)
    return (wall_full - wall_empty) / (n * BLOCK), (cpu_full - cpu_empty) / (n * BLOCK)


def run(rounds: int = ROUNDS) -> list[dict[str, Any]]:
    rows = []
    saved = {k: os.environ.get(k) for k in ("TASKLOOM_DISABLE_PLUGINS", "TASKLOOM_HISTORY_PATH")}
    others = saved["TASKLOOM_DISABLE_PLUGINS"] or ""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TASKLOOM_HISTORY_PATH"] = os.path.join(tmp, "history.db")
        try:
            for case, body, n in CASES:
                bench = _flow(body)
                off: list[tuple[float, float]] = []
                on: list[tuple[float, float]] = []
                # Off and on alternate flow by flow, so a change in the machine's load hits
                # both alike; the medians of many rounds keep one disturbed flow out.
                for _ in range(rounds):
                    off.append(_one_round(bench, n, False, others))
                    on.append(_one_round(bench, n, True, others))
                wall_off, wall_on = statistics.median([w for w, _ in off]), statistics.median([w for w, _ in on])
                cpu_off, cpu_on = statistics.median([c for _, c in off]), statistics.median([c for _, c in on])
                rows.append({
                    "case": case,
                    "rounds": rounds,
                    "off_us_per_task": wall_off * 1e6,
                    "on_us_per_task": wall_on * 1e6,
                    "overhead": wall_on / wall_off - 1.0,
                    "paired_overhead": statistics.median([b[0] / a[0] for a, b in zip(off, on, strict=True)]) - 1.0,
                    "cpu_off_us_per_task": cpu_off * 1e6,
                    "cpu_on_us_per_task": cpu_on * 1e6,
                    "cpu_overhead": cpu_on / cpu_off - 1.0,
                })
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            plugins.reset()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
