"""Mapping and dependencies: map, unmapped, allow_failure, quote and wait_for."""

from taskloom import allow_failure, flow, quote, task, unmapped


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def risky(x: int) -> int:
    if x == 2:
        raise ValueError("two is unlucky")
    return x


@task
def summarize(values: list) -> str:
    ok = [v for v in values if not isinstance(v, Exception)]
    return f"{len(ok)} ok, {len(values) - len(ok)} failed"


@task
def setup_database() -> str:
    return "ready"


@task
def load(table: str, options: dict) -> str:
    return f"{table} loaded with {sorted(options)}"


@flow
def mapping_flow() -> dict:
    scaled = scale.map([1, 2, 3], unmapped(10))              # factor goes whole to each run
    risky_runs = risky.map([1, 2, 3])
    summary = summarize.submit([allow_failure(f) for f in risky_runs])  # runs despite a failure
    ready = setup_database.submit()
    loaded = load.submit("events", quote({"mode": "append"}), wait_for=[ready])
    return {
        "scaled": [f.result() for f in scaled],
        "summary": summary.result(),
        "loaded": loaded.result(),
    }


if __name__ == "__main__":
    result = mapping_flow()
    assert result["scaled"] == [10, 20, 30] and result["summary"] == "2 ok, 1 failed", result
    print(result)
