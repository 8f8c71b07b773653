"""One sentence naming the task and the value Ray could not pickle, instead of Ray's report.

Only called after Ray refused a call, so the search costs nothing on the normal path. It
uses Ray's own cloudpickle, the serializer Ray tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskloom.engine import TaskRunCall

__all__ = ["unpicklable_message"]

_MAX_DEPTH = 6


def _dumps(value: Any) -> BaseException | None:
    from ray import cloudpickle

    try:
        cloudpickle.dumps(value)  # type: ignore[no-untyped-call]
    except Exception as exc:  # what pickling raises varies: TypeError, PicklingError, ...
        return exc
    return None


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _innermost(value: Any, depth: int = 0) -> Any:
    """The deepest part of ``value`` that still fails to pickle (the value itself if none)."""
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        parts = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        parts = list(value)
    else:
        state = getattr(value, "__dict__", None)
        parts = list(state.values()) if isinstance(state, dict) else []
    for part in parts:
        if _dumps(part) is not None:
            return _innermost(part, depth + 1)
    return value


def unpicklable_message(call: TaskRunCall, error: BaseException) -> str | None:
    """Why ``call`` cannot be sent to Ray, in one sentence; None if pickling is not the cause."""
    task = call.task.name
    for name, value in call.parameters.items():
        if _dumps(value) is not None:
            culprit = _innermost(value)
            held = "is" if culprit is value else "holds"
            return (
                f"Task {task!r} cannot be sent to Ray workers because its argument {name!r} "
                f"{held} a {_type_name(culprit)}, which cannot be pickled: pass a picklable "
                "value or create it inside the task."
            )
    failure = _dumps(call.task)
    if failure is not None:
        return (
            f"Task {task!r} cannot be sent to Ray workers because its function cannot be "
            f"pickled ({type(failure).__name__}: {failure}): move what it refers to into "
            "the task, or define the task at module level."
        )
    return None
