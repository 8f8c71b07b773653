"""What recording run history costs per task on the thread runner (goal: at most +20%).

The same flows run without taskloom-history (the plugin disabled, so not even its hooks are
called) and with it, alternating, in one process; each figure is the best of several rounds
minus the same flow with no tasks, as in bench_local.
Beside wall time per task it reports the process's CPU time per task (all threads, the
history writer's included), which other programs on the machine disturb less.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")

from bench_local import _map, _submit

from taskloom import flow, plugins

CASES = [("1000 submitted", _submit, 1000), ("1000-element map", _map, 1000)]


def _use_history(enabled: bool, others: str) -> None:
    disabled = [name for name in others.split(",") if name]
    if not enabled:
        disabled.append("history")
    os.environ["TASKLOOM_DISABLE_PLUGINS"] = ",".join(disabled)
    plugins.reset()  # the next flow loads the entry points again, with or without history


def _cost(body: Callable[[int], None], n: int, enabled: bool, others: str) -> tuple[float, float]:
    """(wall, CPU) seconds per task: best of five, minus the same flow with no task."""
    _use_history(enabled, others)

    @flow(task_runner="concurrent")
    def bench(count: int) -> None:
        body(count)

    def best(count: int) -> tuple[float, float]:
        walls, cpus = [], []
        for _ in range(5):
            wall, cpu = time.perf_counter(), time.process_time()
            bench(count)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        return min(walls), min(cpus)

    (wall_full, cpu_full), (wall_empty, cpu_empty) = best(n), best(0)
    return (wall_full - wall_empty) / n, (cpu_full - cpu_empty) / n


def run() -> list[dict[str, Any]]:
    rows = []
    saved = {k: os.environ.get(k) for k in ("TASKLOOM_DISABLE_PLUGINS", "TASKLOOM_HISTORY_PATH")}
    others = saved["TASKLOOM_DISABLE_PLUGINS"] or ""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TASKLOOM_HISTORY_PATH"] = os.path.join(tmp, "history.db")
        try:
            for case, body, n in CASES:
                off: list[tuple[float, float]] = []
                on: list[tuple[float, float]] = []
                for _ in range(3):  # alternate, so drift in machine load hits both alike
                    off.append(_cost(body, n, False, others))
                    on.append(_cost(body, n, True, others))
                wall_off, wall_on = min(w for w, _ in off), min(w for w, _ in on)
                cpu_off, cpu_on = min(c for _, c in off), min(c for _, c in on)
                rows.append({
                    "case": case,
                    "off_us_per_task": wall_off * 1e6,
                    "on_us_per_task": wall_on * 1e6,
                    "overhead": wall_on / wall_off - 1.0,
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
