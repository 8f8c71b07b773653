"""`remote_options`: Ray options for the tasks submitted inside a ``with`` block.

Prefect users know it from prefect-ray::

    with remote_options(num_cpus=2, resources={"gpu-box": 1}):
        heavy.submit(data)

The options are kept in a context variable of the flow's thread and read by
`RayTaskRunner.submit` there; a task's own ``runner_options`` win over them, key by key.
Under another runner they are ignored.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["current_remote_options", "remote_options"]

_EMPTY: Mapping[str, Any] = {}
_current: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "taskloom_ray_remote_options", default=_EMPTY
)


@contextmanager
def remote_options(**options: Any) -> Iterator[Mapping[str, Any]]:
    """Pass ``options`` to Ray's ``.options(...)`` for every task submitted in this block.

    Blocks nest: an inner block adds to (and overrides) the outer one's options.
    """
    merged = {**_current.get(), **options}
    token = _current.set(merged)
    try:
        yield merged
    finally:
        _current.reset(token)


def current_remote_options() -> Mapping[str, Any]:
    """The options of the innermost `remote_options` block in this context (empty outside)."""
    return _current.get()
