"""Retries: a task that fails twice, then succeeds; delays grow exponentially."""

import random

from taskloom import exponential_backoff, flow, task

attempts = {"count": 0}


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0.1), retry_jitter_factor=0.2)
def call_flaky_service(url: str) -> str:
    attempts["count"] += 1
    if attempts["count"] < 3:
        raise ConnectionError(f"{url} did not answer (attempt {attempts['count']})")
    return f"200 OK after {attempts['count']} attempts"


def only_connection_errors(task, task_run, state) -> bool:
    """Retry network trouble, not bugs."""
    return isinstance(state.exception, ConnectionError)


@task(retries=5, retry_condition_fn=only_connection_errors)
def parse(text: str) -> int:
    return int(random.choice(["1", "2"])) + len(text)


@flow(task_runner="sequential")
def retrying_flow() -> int:
    body = call_flaky_service("https://example.invalid/api")
    return parse(body)


if __name__ == "__main__":
    print(retrying_flow())
