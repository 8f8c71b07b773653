"""Cache keys: which task runs may reuse an earlier run's result.

A task opts in with ``cache_policy=INPUTS`` (same arguments), ``TASK_SOURCE`` (same code),
a sum of policies (``INPUTS + TASK_SOURCE``: both the same), or its own ``cache_key_fn``.
Keys are computed where the task runs, from the resolved argument values, and are stable across
processes and machines, so a shared result storage shares the cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import pickle
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from .context import FlowRun, TaskRun

__all__ = ["INPUTS", "NONE", "TASK_SOURCE", "CacheContext", "CachePolicy", "stable_hash", "task_input_hash"]


class CachedTask(Protocol):
    """The task a cache key is made for, as `CacheContext` gives it (a `taskloom.Task`; named
    through this protocol because tasks, a layer above, use this module)."""

    name: str
    fn: Callable[..., Any]
    #: The task's stable key: its module and qualified name, the same on every host.
    task_key: str


class CacheContext(NamedTuple):
    """What a ``cache_key_fn`` receives first: the task, its run and the flow run."""

    task: CachedTask
    task_run: TaskRun
    flow_run: FlowRun | None


def _encode(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        # Sets iterate in an order that differs between processes: sort their encodings.
        return sorted(json.dumps(v, sort_keys=True, default=_encode) for v in value)
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    raise TypeError


def stable_hash(*parts: Any) -> str:
    """A hex digest of ``parts`` that is the same in every process (JSON first, pickle else)."""
    try:
        data = json.dumps(parts, sort_keys=True, default=_encode, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        try:
            data = pickle.dumps(parts, protocol=4)
        except Exception:
            import cloudpickle  # type: ignore[import-untyped]

            data = cloudpickle.dumps(parts, protocol=4)
    return hashlib.sha256(data).hexdigest()


def task_input_hash(context: CacheContext, arguments: Mapping[str, Any]) -> str | None:
    """Prefect's helper: a key from the task's identity and its arguments' values."""
    return stable_hash(context.task.task_key, dict(arguments))


class CachePolicy:
    """How to compute a cache key; add policies with ``+`` to require all of them."""

    def key(self, context: CacheContext, arguments: Mapping[str, Any]) -> str | None:
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        mine = self.policies if isinstance(self, _Compound) else (self,)
        theirs = other.policies if isinstance(other, _Compound) else (other,)
        return _Compound(mine + theirs)

    def __repr__(self) -> str:
        return type(self).__name__.strip("_").upper()


class _Inputs(CachePolicy):
    def key(self, context: CacheContext, arguments: Mapping[str, Any]) -> str | None:
        return task_input_hash(context, arguments)


class _TaskSource(CachePolicy):
    def key(self, context: CacheContext, arguments: Mapping[str, Any]) -> str | None:
        fn = context.task.fn
        try:
            source: Any = inspect.getsource(fn)
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            source = code.co_code.hex() if code is not None else repr(fn)
        return stable_hash(context.task.task_key, source)


class _NoCache(CachePolicy):
    def key(self, context: CacheContext, arguments: Mapping[str, Any]) -> str | None:
        return None

    def __repr__(self) -> str:
        return "NONE"


class _Compound(CachePolicy):
    def __init__(self, policies: tuple[CachePolicy, ...]) -> None:
        self.policies = policies

    def key(self, context: CacheContext, arguments: Mapping[str, Any]) -> str | None:
        keys = [p.key(context, arguments) for p in self.policies]
        if any(k is None for k in keys):
            return None
        return stable_hash(*keys)

    def __repr__(self) -> str:
        return " + ".join(repr(p) for p in self.policies)


INPUTS: CachePolicy = _Inputs()
TASK_SOURCE: CachePolicy = _TaskSource()
NONE: CachePolicy = _NoCache()
