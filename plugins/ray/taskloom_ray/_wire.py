"""Calls and outcomes as bytes, pickled for speed: the per-task cost Ray adds is mostly here.

Ray pickles task arguments and return values with cloudpickle, whose Python hook runs for
every object, and the core's small attrs values (`TaskRun`, `State`) pickle through Python
``__getstate__``/``__setstate__`` methods. Ray passes ``bytes`` through untouched, so the
runner pickles the call on the driver and the outcome on the worker itself:

* with the C pickler and a dispatch table that writes attrs values, named tuples and UUIDs
  as ``(class, field values)``: loading them needs nothing but taskloom itself;
* with cloudpickle only where the C pickler would be wrong or refuses: objects of the flow's
  script (module ``__main__``, which on a worker is Ray's own), or anything local;
* in two parts: what every run of a task in a flow run shares (the task, the flow run, the
  run defaults) is pickled once per runner and loaded once per worker; only the run's own
  part (its identity and parameters) is pickled per call.

The data a task returns is pickled as it is: numpy arrays and the like keep their own
reducers.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from taskloom.context import FlowRun, TaskRun
from taskloom.engine import RunDefaults, TaskRunCall, TaskRunEvent, TaskRunOutcome
from taskloom.states import State, StateType

__all__ = ["CallEncoder", "decode_call", "dumps", "loads"]

_PROTOCOL = 5
_MAIN = b"__main__"

loads = pickle.loads


def _attrs_reducer(cls: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """``obj -> (cls, values)`` for an attrs class whose fields are all positional."""
    fields = attrs.fields(cls)
    if any(not f.init or f.kw_only or f.alias != f.name for f in fields):
        return None  # cannot be rebuilt positionally: leave it to its own pickling
    names = tuple(f.name for f in fields)
    return lambda obj: (cls, tuple([getattr(obj, n) for n in names]))


def _tuple_reducer(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    return lambda obj: (cls, tuple(obj))


def _state_type_reducer(member: StateType) -> str:
    return f"StateType.{member.name}"


def _uuid_reducer(value: uuid.UUID) -> tuple[Any, ...]:
    return (uuid.UUID, (None, None, None, None, value.int))


def _no_data_reducer(_: Any) -> str:
    # The engine's "no result" sentinel: an instance of a class made at run time, which
    # neither pickles by reference nor keeps its identity through cloudpickle. A string
    # makes pickle write it as the global `taskloom.states._NO_DATA`.
    return "_NO_DATA"


def _states_module() -> Any:
    import taskloom.states

    return taskloom.states


def _dispatch_table() -> dict[type, Callable[[Any], Any]]:
    table: dict[type, Callable[[Any], Any]] = {uuid.UUID: _uuid_reducer}
    for value_class in (TaskRun, FlowRun, State):
        reducer = _attrs_reducer(value_class)
        if reducer is not None:
            table[value_class] = reducer
    for tuple_class in (RunDefaults, TaskRunEvent, TaskRunOutcome):
        table[tuple_class] = _tuple_reducer(tuple_class)
    # Enum members pickle through a Python __reduce_ex__; as globals they cost nothing.
    table[StateType] = _state_type_reducer
    no_data = getattr(_states_module(), "_NO_DATA", None)
    if no_data is not None and type(no_data).__module__ == "taskloom.states":
        table[type(no_data)] = _no_data_reducer
    return table


_TABLE: dict[type, Callable[[Any], Any]] = _dispatch_table()


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, **_TABLE}


def _cloud_dumps(obj: Any) -> bytes:
    from collections import ChainMap

    from ray import cloudpickle

    buffer = io.BytesIO()
    pickler = cloudpickle.Pickler(buffer, protocol=_PROTOCOL)  # type: ignore[no-untyped-call]
    pickler.dispatch_table = ChainMap(_TABLE, pickler.dispatch_table)
    pickler.dump(obj)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


def dumps(obj: Any) -> bytes:
    """``obj`` pickled so that `loads` rebuilds it on a Ray worker or on the driver."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, _PROTOCOL).dump(obj)
    except Exception:
        return _cloud_dumps(obj)
    data = buffer.getvalue()
    return _cloud_dumps(obj) if _MAIN in data else data


class CallEncoder:
    """Pickles calls for one runner: the shared part once per task and flow run, cached."""

    def __init__(self, capture_prints: bool) -> None:
        self.capture_prints = capture_prints
        self._shared: dict[tuple[int, int, RunDefaults], tuple[Any, Any, bytes]] = {}

    def encode(self, call: TaskRunCall) -> bytes:
        """The call's shared part and its own part, pickled, in one ``bytes`` (one Ray arg)."""
        state = call.__getstate__()
        task, flow_run, defaults = state.pop("task"), state.pop("flow_run"), state.pop("defaults")
        key = (id(task), id(flow_run), defaults)
        entry = self._shared.get(key)
        if entry is None:
            if self.capture_prints and task.log_prints is None and not defaults.log_prints:
                defaults = defaults._replace(log_prints=True)  # see _worker: prints as logs
            # The task and flow run are kept here, so their ids are not reused meanwhile.
            shared = dumps((task, flow_run, defaults))
            entry = self._shared[key] = (task, flow_run, len(shared).to_bytes(4, "big") + shared)
        return entry[2] + dumps(state)


_decoded: dict[bytes, tuple[Any, Any, RunDefaults]] = {}
_DECODED_MAX = 256


def decode_call(data: bytes) -> TaskRunCall:
    """The call `CallEncoder.encode` pickled; the shared part is loaded once per worker."""
    end = 4 + int.from_bytes(data[:4], "big")
    shared = data[4:end]
    parts = _decoded.get(shared)
    if parts is None:
        if len(_decoded) >= _DECODED_MAX:
            _decoded.clear()
        parts = _decoded[shared] = loads(shared)
    state = loads(memoryview(data)[end:])
    state["task"], state["flow_run"], state["defaults"] = parts
    call: TaskRunCall = TaskRunCall.__new__(TaskRunCall)
    call.__setstate__(state)
    return call
