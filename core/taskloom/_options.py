"""Task and flow options: declared once here, checked so a wrong one fails where it is written.

`TaskOptions` and `FlowOptions` hold the options as given (``with_options`` evolves them);
`Task` and `Flow` check and normalize them. Each check raises `TypeError` or `ValueError`
with one sentence naming the task (or flow), the option and the value given. Imported by the
first ``@task`` or ``@flow``, not by ``import taskloom``.
"""

from __future__ import annotations

import datetime
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs

__all__ = ["FlowOptions", "TaskOptions", "as_seconds", "check_delay", "check_hooks", "check_retries", "check_run_name", "check_timeout", "given"]

_O = TypeVar("_O", "TaskOptions", "FlowOptions")


@attrs.frozen(kw_only=True)
class TaskOptions:
    """The options of ``@task(...)``, ``Task(fn, ...)`` and ``Task.with_options(...)``."""

    name: str | None = None
    description: str | None = None
    tags: Iterable[str] = ()
    runner_options: Mapping[str, Any] | None = None
    retries: int | None = None
    retry_delay_seconds: Any = None
    retry_jitter_factor: float | None = None
    retry_condition_fn: Callable[..., bool] | None = None
    timeout_seconds: float | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Any = None
    cache_policy: Any = None
    cache_key_fn: Callable[..., str | None] | None = None
    cache_expiration: Any = None
    refresh_cache: bool | None = None
    on_completion: Any = None
    on_failure: Any = None
    on_crashed: Any = None
    task_run_name: str | Callable[[], str] | None = None
    log_prints: bool | None = None
    version: str | None = None


@attrs.frozen(kw_only=True)
class FlowOptions:
    """The options of ``@flow(...)``, ``Flow(fn, ...)`` and ``Flow.with_options(...)``."""

    name: str | None = None
    description: str | None = None
    task_runner: Any = None
    retries: int = 0
    retry_delay_seconds: float | None = None
    timeout_seconds: float | None = None
    flow_run_name: str | Callable[[], str] | None = None
    log_prints: bool | None = None
    persist_result: bool | None = None
    on_completion: Any = None
    on_failure: Any = None
    on_crashed: Any = None
    on_cancellation: Any = None
    version: str | None = None
    validate_parameters: bool = True


def given(kind: type[_O], where: str, fn: Any, options: Mapping[str, Any], base: _O | None = None) -> _O:
    """``options`` as a `kind`, on top of ``base``; an unknown name is one sentence listing them all."""
    names = attrs.fields_dict(kind)
    unknown = sorted(set(options) - set(names))
    if unknown:
        what = "task" if kind is TaskOptions else "flow"
        name = options.get("name") or (base.name if base is not None else None) or getattr(fn, "__name__", repr(fn))
        raise TypeError(
            f"{where} got unknown option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)} for {what} {str(name)!r}. Options: {', '.join(names)}."
        )
    return kind(**options) if base is None else attrs.evolve(base, **options)


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
