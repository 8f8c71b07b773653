"""Tasks the conformance suite runs: importable by name on any worker with taskloom installed."""

from __future__ import annotations

import os
import time
from typing import Any

from taskloom import get_run_logger, task


class ConformanceError(Exception):
    """The exception `fail` raises, so tests can tell it from any other."""


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def identity(value: Any) -> Any:
    return value


@task
def total(values: Any) -> int:
    if isinstance(values, dict):
        values = list(values.values())
    return sum(values)


@task
def noop() -> None:
    return None


@task
def fail(message: str) -> None:
    raise ConformanceError(message)


@task
def interval(seconds: float) -> tuple[float, float, int]:
    """Sleep, and return when it started and ended and in which process."""
    started = time.time()
    time.sleep(seconds)
    return started, time.time(), os.getpid()


@task
def stamped(value: Any, seconds: float = 0.0) -> tuple[Any, float, float]:
    started = time.time()
    time.sleep(seconds)
    return value, started, time.time()


@task
def log_lines(tag: str, count: int) -> str:
    logger = get_run_logger()
    for i in range(count):
        logger.info("line %d of %s", i, tag)
    logger.warning("warned %s", tag)
    return tag
