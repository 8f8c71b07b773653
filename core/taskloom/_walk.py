"""`walk`: a value rebuilt with a function applied to its leaves.

Below the futures, the driver and the engine, which all use it: the driver to find futures
in a task's arguments, the worker to put their results in their place.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["walk"]

_ATOMIC = frozenset({str, bytes, int, float, bool, type(None)})


def walk(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``value`` rebuilt with ``leaf`` applied to everything that is not a list, tuple
    (named ones too), dict or set: how futures are found in arguments on the driver and
    replaced by their values on the worker."""
    if type(value) in _ATOMIC:
        return value
    if isinstance(value, list):
        return [walk(v, leaf) for v in value]
    if isinstance(value, tuple):
        items = [walk(v, leaf) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {k: walk(v, leaf) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(walk(v, leaf) for v in value)
    return _walk_fields(value, leaf)


def _walk_fields(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``leaf(value)``; or, for a dataclass, attrs or pydantic instance that ``leaf`` keeps,
    the instance with its fields walked: a shallow copy if a field changed, else itself."""
    new = leaf(value)
    if new is not value:
        return new
    cls = type(value)
    pydantic = False
    if hasattr(cls, "__dataclass_fields__"):
        names: Any = cls.__dataclass_fields__
    elif hasattr(cls, "__attrs_attrs__"):
        names = [a.name for a in cls.__attrs_attrs__]
    else:
        module = sys.modules.get("pydantic")  # never imported here: only if the user has
        if module is None or not isinstance(value, module.BaseModel):
            return value
        names, pydantic = getattr(cls, "model_fields", None) or cls.__fields__, True
    changes = {}
    for name in names:
        field = getattr(value, name, _MISSING)
        if field is not _MISSING:
            walked = walk(field, leaf)
            if walked is not field:
                changes[name] = walked
    if not changes:
        return value
    if pydantic:
        copy_model = getattr(value, "model_copy", None) or value.copy  # pydantic 2, or 1
        return copy_model(update=changes)
    copied = copy.copy(value)
    for name, walked in changes.items():
        object.__setattr__(copied, name, walked)  # frozen classes too: this is a new copy
    return copied


_MISSING = object()
