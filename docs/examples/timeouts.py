"""Timeouts: a task that takes too long ends TimedOut; on `processes` its work really stops."""

import time

from taskloom import flow, task


@task(timeout_seconds=0.5)
def slow_query() -> str:
    time.sleep(5)  # blocked in C: a thread cannot be stopped here, a worker process can
    return "rows"


@flow(task_runner="processes")
def report() -> dict:
    future = slow_query.submit()
    future.wait()
    return {"query": future.state.name}


if __name__ == "__main__":
    result = report()
    assert result == {"query": "TimedOut"}, result
    print(result)
