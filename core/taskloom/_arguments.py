"""What a call's arguments become in the flow's process: the futures found in them
(`Inputs`, which the runner resolves on the worker), states standing for their results, and
the parameters of each run of ``task.map(...)`` by Prefect's rules. Nothing here runs on a
worker.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from ._calls import _Upstream
from ._walk import walk
from .futures import TaskRunFuture
from .states import State, StateType, UpstreamTaskError
from .tasks import Task, allow_failure, describe_signature, quote, unmapped

__all__ = ["Inputs", "map_parameters"]


def map_parameters(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters of each run of ``.map(*args, **kwargs)``, by Prefect's rules.

    Any iterable but a string, bytes or a file is mapped over (a dict: its keys), as Prefect
    does; defaults are not; iterables passed through ``**kwargs`` are. A future or a `State`
    given directly is waited for and its result mapped over (its elements, if it is
    iterable); ``allow_failure(futures)`` and ``quote(values)`` map over the list, each
    run's element still wrapped. `unmapped` values go whole to every run.
    """
    try:
        given = task._signature.bind(*args, **kwargs).arguments
    except TypeError as exc:
        raise TypeError(
            f"Task {task.name!r} got arguments that do not fit its signature "
            f"{describe_signature(getattr(task.fn, '__name__', task.name), task._signature)}: {exc}."
        ) from None
    var_keyword = next(
        (p.name for p in task._signature.parameters.values() if p.kind is p.VAR_KEYWORD), None
    )
    extra = given.pop(var_keyword, {}) if var_keyword is not None else {}
    items: list[tuple[Any, Any]] = [*given.items(), *(((var_keyword, k), v) for k, v in extra.items())]
    iterables: dict[Any, list[Any]] = {}
    static: dict[Any, Any] = {}
    wrapped: dict[Any, type[allow_failure | quote]] = {}
    for key, value in items:
        wrapper = type(value) if isinstance(value, (allow_failure, quote)) else None
        inner = value.value if wrapper is not None else value
        if isinstance(inner, unmapped):
            static[key] = inner.value
            continue
        allowed = wrapper is allow_failure
        # A quoted value is taken as it is: a future inside it is not waited for.
        resolved = inner if wrapper is quote else _mapped_value(task.name, inner, allowed)
        if isinstance(resolved, (str, bytes, io.IOBase)) or not isinstance(resolved, Iterable):
            static[key] = value if resolved is inner else (allow_failure(resolved) if allowed else resolved)
            continue
        iterables[key] = list(resolved)
        if wrapper is not None:
            wrapped[key] = wrapper
    if not iterables:
        raise TypeError(
            f"Task {task.name!r} was mapped without any iterable argument: give at least "
            "one list (wrap arguments every run shares in unmapped(...))."
        )
    lengths = {(k[1] if isinstance(k, tuple) else k): len(v) for k, v in iterables.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Task {task.name!r} was mapped over iterables of different lengths: {lengths}.")
    # What every run shares, built once: static values, then defaults of the rest.
    shared: dict[str, Any] = {}
    for key, value in static.items():
        if isinstance(key, tuple):
            shared.setdefault(key[0], {})[key[1]] = value
        else:
            shared[key] = value
    defaults = task._signature.bind_partial()
    defaults.apply_defaults()  # each default, () for *args and {} for **kwargs
    for name, default in defaults.arguments.items():
        if name not in iterables:
            shared.setdefault(name, default)
    keyword_map = any(isinstance(key, tuple) for key in iterables)
    runs = []
    for i in range(len(next(iter(iterables.values())))):
        run = shared.copy()
        if keyword_map and var_keyword is not None:
            run[var_keyword] = dict(run.get(var_keyword, {}))
        for key, values in iterables.items():
            value = wrapped[key](values[i]) if key in wrapped else values[i]
            if isinstance(key, tuple):
                run[key[0]][key[1]] = value
            else:
                run[key] = value
        runs.append(run)
    return runs


def _mapped_value(task_name: str, value: Any, allowed: bool) -> Any:
    """A future or state given to ``.map()`` directly: its result, waited for (Prefect's rule)."""
    if isinstance(value, TaskRunFuture):
        value.wait()
        upstream, state = f"task run {value.task_run.name!r}", value.state
    elif isinstance(value, State):
        upstream, state = "a state", value
    else:
        return value
    if state.is_completed() or allowed:
        return state.result(raise_on_failure=False)
    raise UpstreamTaskError(
        f"Task {task_name!r} was mapped over {upstream}, which did not reach a 'COMPLETED' "
        f"state ({state!r}); wrap it in allow_failure(...) to map over it anyway."
    )


class Inputs:
    """Futures found in a call's arguments, numbered in the order the runner passes them."""

    __slots__ = ("allow", "futures", "slots")

    def __init__(self) -> None:
        self.futures: list[TaskRunFuture[Any]] = []
        self.slots: dict[int, int] = {}
        self.allow: list[bool] = []

    def add(self, future: TaskRunFuture[Any], allowed: bool) -> int:
        index = self.slots.get(id(future))
        if index is None:
            index = self.slots[id(future)] = len(self.futures)
            self.futures.append(future)
            self.allow.append(allowed)
        elif not allowed:
            self.allow[index] = False  # asked for plainly somewhere: it must complete
        return index

    def collect(self, value: Any, allowed: bool = False) -> Any:
        """``value`` with every future replaced by a placeholder (recursively)."""

        def leaf(item: Any) -> Any:
            if isinstance(item, TaskRunFuture):
                return _Upstream(self.add(item, allowed))
            if isinstance(item, allow_failure):
                return self.collect(item.value, True)
            if isinstance(item, quote):
                return item.value
            if isinstance(item, State):
                return _state_value(item, allowed)
            return item

        return walk(value, leaf)


def _state_value(state: State, allowed: bool) -> Any:
    """A state given as an argument stands for its result, as in Prefect."""
    if state.type is StateType.COMPLETED or allowed:
        return state.result(raise_on_failure=False)
    raise UpstreamTaskError(
        f"A task was given the state {state!r} as an argument, which did not reach a 'COMPLETED' "
        "state; wrap it in allow_failure(...) to pass it anyway."
    )
