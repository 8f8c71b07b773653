"""Naming what cannot be pickled, so a task run that cannot reach a worker says why in one line.

Only called after Dask failed to serialize a call: the happy path pickles once, in Dask.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from taskloom.engine import TaskRunCall

_MAX_DEPTH = 6


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _pickles(value: Any) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(value)
    except Exception:
        return False
    return True


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    elif callable(value) and hasattr(value, "__code__"):
        for cell in getattr(value, "__closure__", None) or ():
            try:
                yield cell.cell_contents
            except ValueError:  # an empty cell
                continue
        names = getattr(value.__code__, "co_names", ())
        namespace = getattr(value, "__globals__", {})
        yield from (namespace[name] for name in names if name in namespace)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield from vars(value).values()


def _culprit(value: Any, depth: int = 0) -> Any | None:
    """The innermost value inside ``value`` that does not pickle, or None if it all does."""
    if _pickles(value):
        return None
    if depth < _MAX_DEPTH:
        for child in _children(value):
            found = _culprit(child, depth + 1)
            if found is not None:
                return found
    return value


def unpicklable_message(call: TaskRunCall) -> str | None:
    """One sentence naming the task and the type of the value that does not pickle, if any."""
    task = call.task
    for name, value in call.parameters.items():
        found = _culprit(value)
        if found is not None:
            what = (
                f"its argument {name!r} is a {_type_name(found)}"
                if found is value
                else f"its argument {name!r} holds a {_type_name(found)}"
            )
            return (
                f"Task {task.name!r} cannot be sent to the Dask workers because {what}, "
                "which cannot be pickled: pass a value that pickles, or create it inside the task."
            )
    found = _culprit(task.fn)
    if found is not None:
        what = "function" if found is task.fn else f"function refers to a {_type_name(found)}, which"
        return (
            f"Task {task.name!r} cannot be sent to the Dask workers because its {what} "
            "cannot be pickled: define it at module level and create such values inside the task."
        )
    return None


class QuietSerializationErrors(logging.Filter):
    """Drops distributed's own multi-traceback log of a failed pickle, in the submitting thread.

    The runner turns that failure into one clear sentence on the task run; Dask's log would
    bury it under three tracebacks.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def active(self) -> bool:
        return getattr(self._local, "active", False)

    def set_active(self, active: bool) -> None:
        self._local.active = active

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active()
