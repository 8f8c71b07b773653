"""The flow that tests/rich runs in a subprocess, on a pseudo-terminal or with pipes.

It ends by printing whether rich was imported, so a test can tell that a run without the
display never loaded it.
"""

import sys

from taskloom import INPUTS, flow, task


@task
def add_one(x: int) -> int:
    return x + 1


@task
def fail_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"{x} is odd")
    return x


@task(cache_policy=INPUTS)
def lookup(key: str) -> str:
    return key.upper()


@task
def shout() -> None:
    print("a line printed by a task")


@task
def inner_step(x: int) -> int:
    return 2 * x


@flow
def inner(n: int) -> int:
    return sum(f.result() for f in inner_step.map(range(n)))


@flow
def outer() -> str:
    add_one.map(range(12))
    fail_odd.map(range(6))
    lookup.submit("a").wait()
    lookup.submit("a").wait()  # Cached: it counts as done
    shout.submit().wait()
    inner(5)
    return "done"  # a plain value: the flow completes although three runs failed


if __name__ == "__main__":
    state = outer(return_state=True)
    print(f"final={state.name} rich_imported={'rich' in sys.modules}")
