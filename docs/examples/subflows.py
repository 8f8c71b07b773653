"""Subflows: a flow called inside a flow is a child flow run with its own runner."""

from taskloom import flow, task


@task
def extract(source: str) -> list[int]:
    return [len(source), 2 * len(source)]


@flow(task_runner="sequential")
def extract_all(sources: list[str]) -> list[int]:
    return [x for s in sources for x in extract(s)]


@flow
def pipeline() -> int:
    rows = extract_all(["api", "files"])   # a child flow run, shown in the parent's log
    return sum(rows)


if __name__ == "__main__":
    print(pipeline())
