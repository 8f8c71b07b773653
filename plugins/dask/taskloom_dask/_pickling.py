"""Pickling task-run calls for the trip to a worker, and naming what does not pickle.

A call travels to Dask as bytes, pickled once here: the scheduler passes bytes on without
unpickling and pickling the call again (and without importing the user's modules), and a call
that does not pickle fails here, in the flow's thread, with one sentence naming the task and
the type of the value, instead of Dask's tracebacks.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from taskloom.engine import TaskRunCall

_MAX_DEPTH = 6


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _pickles(value: Any) -> bool:
    import cloudpickle  # type: ignore[import-untyped]

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


def dumps_call(call: TaskRunCall) -> bytes:
    """The call as bytes; by value (cloudpickle) when it holds code from a script."""
    try:
        blob = pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
        if b"__main__" not in blob:
            return blob
    except Exception:
        pass
    import cloudpickle  # type: ignore[import-untyped]

    try:
        return cloudpickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]
    except Exception as exc:
        message = unpicklable_message(call)
        if message is None:
            message = (
                f"Task {call.task.name!r} cannot be sent to the Dask workers because its call "
                f"does not pickle ({type(exc).__name__}: {exc})."
            )
        raise TypeError(message) from exc


def loads_call(blob: bytes) -> TaskRunCall:
    return pickle.loads(blob)  # type: ignore[no-any-return]
