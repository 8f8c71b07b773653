"""Checks of task and flow options, so a wrong one fails where it is written.

Each check raises `TypeError` or `ValueError` with one sentence naming the task (or flow), the
option and the value given.
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["as_seconds", "check_delay", "check_hooks", "check_retries", "check_run_name", "check_timeout"]


def _kind(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        inner = sorted({type(v).__name__ for v in value})
        return f"{type(value).__name__} of {', '.join(inner)}"
    return type(value).__name__


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_retries(owner: str, retries: Any) -> int:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"{owner}: retries must be a whole number of at least 0, got {retries!r}.")
    return retries


def check_delay(owner: str, delay: Any) -> Any:
    """A number, a list of numbers, or a callable taking the retry count and giving a list."""
    if delay is None or callable(delay):
        return delay
    if _number(delay):
        if delay < 0:
            raise ValueError(f"{owner}: retry_delay_seconds must not be negative, got {delay!r}.")
        return float(delay)
    if isinstance(delay, (list, tuple)) and all(_number(d) and d >= 0 for d in delay):
        if len(delay) > 50:
            raise ValueError(f"{owner}: Can not configure more than 50 retry delays per task (got {len(delay)}).")
        return [float(d) for d in delay]
    raise TypeError(
        f"{owner}: retry_delay_seconds must be a number, a list of numbers or a callable such "
        f"as exponential_backoff(backoff_factor=2), got {delay!r} ({_kind(delay)})."
    )


def check_timeout(owner: str, seconds: Any) -> float | None:
    if seconds is None:
        return None
    if not _number(seconds) or seconds <= 0:
        raise ValueError(
            f"{owner}: timeout_seconds must be a number of seconds greater than 0, got {seconds!r}."
        )
    return float(seconds)


def check_jitter(owner: str, factor: Any) -> float | None:
    if factor is None:
        return None
    if not _number(factor) or factor < 0:
        raise ValueError(f"{owner}: `retry_jitter_factor` must be >= 0, got {factor!r}.")
    return float(factor)


def check_version(owner: str, version: Any) -> str | None:
    if version is not None and not isinstance(version, str):
        raise TypeError(f"{owner}: version must be a string, got {version!r} ({_kind(version)}).")
    return version


def check_callable(owner: str, option: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{owner}: {option} must be a function, got {value!r} ({_kind(value)}).")
    return value


def check_hooks(owner: str, option: str, hooks: Any) -> list[Callable[..., Any]]:
    if hooks is None:
        return []
    if callable(hooks):
        hooks = [hooks]
    checked: list[Callable[..., Any]] = list(hooks)
    for hook in checked:
        if not callable(hook):
            raise TypeError(f"{owner}: every {option} hook must be a function, got {hook!r}.")
    return checked


def check_run_name(owner: str, template: Any, parameters: Iterable[str], described: str) -> Any:
    """A template naming only the function's parameters, or a callable."""
    if template is None or callable(template):
        return template
    if not isinstance(template, str):
        raise TypeError(f"{owner}: a run name must be a string template or a function, got {template!r}.")
    names = set(parameters)
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        root = field.split(".")[0].split("[")[0]
        if root not in names:
            raise ValueError(
                f"{owner}: the run name template {template!r} names {root!r}, which is not a "
                f"parameter of {described}."
            )
    return template


def as_seconds(owner: str, option: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if _number(value) and value >= 0:
        return float(value)
    raise TypeError(f"{owner}: {option} must be a timedelta or a number of seconds, got {value!r}.")


def check_flag(owner: str, option: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{owner}: {option} must be True or False, got {value!r}.")
    return value
