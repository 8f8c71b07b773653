"""The typed public API: mypy knows what `.submit()` and a direct call give.

Checked by `nox -s typecheck` (mypy --strict) and run by the tests.
"""

from __future__ import annotations

from taskloom import TaskFuture, flow, task


@task
def length(text: str) -> int:
    return len(text)


@flow(task_runner="concurrent")
def typed_flow(words: list[str]) -> int:
    futures: list[TaskFuture[int]] = [length.submit(word) for word in words]
    direct: int = length("direct")
    return sum(future.result() for future in futures) + direct


if __name__ == "__main__":
    assert typed_flow(["a", "bb", "ccc"]) == 12
