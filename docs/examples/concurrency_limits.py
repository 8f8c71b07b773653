"""Concurrency limits by tag: at most two task runs tagged "database" at once."""

import os
import time

from taskloom import flow, task

# Usually in taskloom.toml:  [concurrency_limits]  database = 2
os.environ.setdefault("TASKLOOM_CONCURRENCY_LIMITS_DATABASE", "2")


@task(tags=["database"])
def query(n: int) -> tuple[float, float]:
    started = time.time()
    time.sleep(0.2)
    return started, time.time()


@flow
def queries() -> int:
    spans = [f.result() for f in query.map(range(6))]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    return most


if __name__ == "__main__":
    most_at_once = queries()
    assert most_at_once <= 2, most_at_once
    print("most at once:", most_at_once)
