"""Caching: the second flow run reuses the first one's result (state Cached)."""

import os
import tempfile
from datetime import timedelta

from taskloom import INPUTS, TASK_SOURCE, flow, task

os.environ.setdefault("TASKLOOM_RESULTS_PATH", tempfile.mkdtemp(prefix="taskloom-cache-"))


@task(cache_policy=INPUTS + TASK_SOURCE, cache_expiration=timedelta(hours=1))
def expensive_sum(numbers: list[int]) -> int:
    print("computing...")
    return sum(numbers)


@flow
def cached_flow() -> str:
    future = expensive_sum.submit([1, 2, 3])
    return f"{future.result()} ({future.state.name})"


if __name__ == "__main__":
    first, second = cached_flow(), cached_flow()
    assert (first, second) == ("6 (Completed)", "6 (Cached)"), (first, second)
    print(first, "then", second)
