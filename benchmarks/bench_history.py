"""What recording run history costs per task on the thread runner (goal: at most +20%).

The same flows run with taskloom-history off and on, alternating, in one process; each
figure is the best of several rounds minus the same flow with no tasks, as in bench_local.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TASKLOOM_LOGGING_LEVEL", "WARNING")

from bench_local import _best, _map, _submit

from taskloom import flow

CASES = [("1000 submitted", _submit, 1000), ("1000-element map", _map, 1000)]


def _cost(body: Callable[[int], None], n: int, enabled: bool) -> float:
    os.environ["TASKLOOM_HISTORY_ENABLED"] = "true" if enabled else "false"

    @flow(task_runner="concurrent")
    def bench(count: int) -> None:
        body(count)

    return (_best(lambda: bench(n), repeat=5) - _best(lambda: bench(0), repeat=5)) / n


def run() -> list[dict[str, Any]]:
    rows = []
    saved = {k: os.environ.get(k) for k in ("TASKLOOM_HISTORY_ENABLED", "TASKLOOM_HISTORY_PATH")}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TASKLOOM_HISTORY_PATH"] = os.path.join(tmp, "history.db")
        try:
            for case, body, n in CASES:
                off, on = [], []
                for _ in range(2):  # alternate, so drift in machine load hits both alike
                    off.append(_cost(body, n, False))
                    on.append(_cost(body, n, True))
                rows.append({
                    "case": case,
                    "off_us_per_task": min(off) * 1e6,
                    "on_us_per_task": min(on) * 1e6,
                    "overhead": min(on) / min(off) - 1.0,
                })
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
