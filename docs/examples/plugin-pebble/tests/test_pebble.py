"""taskloom's conformance suite on the ``pebble`` runner, timeouts that stop the worker included."""

from __future__ import annotations

import logging
import os

import pytest

from taskloom import flow, task
from taskloom.testing import RunnerConformance


class TestPebble(RunnerConformance):
    runner = "pebble"


@task(timeout_seconds=0.5, retries=1, retry_delay_seconds=0)
def hangs() -> int:
    import time

    time.sleep(30)
    return os.getpid()


def test_a_timed_out_attempt_is_retried_then_ends_timed_out(caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, object] = {}

    @flow(task_runner="pebble")
    def hanging() -> None:
        future = hangs.submit()
        future.wait()
        seen["state"] = future.state

    with caplog.at_level(logging.INFO, logger="taskloom"):
        assert hanging(return_state=True).is_failed()
    state = seen["state"]
    assert state.name == "TimedOut", state  # type: ignore[attr-defined]
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("Timed out (Task run exceeded timeout of 0.5 second(s))") and "retry 1 of 1" in line for line in lines), lines
