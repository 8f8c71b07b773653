"""The wire format of task-run calls and outcomes, shared by every runner that leaves the process.

A call crosses to a worker as bytes and its outcome comes back as bytes, pickled here:

* with the C pickler and a dispatch table that writes the core's small values (`TaskRun`,
  `State`, named tuples, UUIDs) as ``(class, field values)``: the cheapest form to write and
  to load, and loading needs nothing but taskloom itself;
* with cloudpickle, by value, where plain pickle would be wrong or refuses: code of the flow's
  script (module ``__main__``, which on a worker is another program), lambdas, local classes;
* a call in two parts: what every run of a task in a flow run shares (the task, the flow run,
  the run defaults) is pickled once per `CallEncoder` and loaded once per worker process; only
  the run's own part (its identity and parameters) is pickled per call.

What cannot travel is named in one sentence: a call whose argument does not pickle names the
task, the argument and the value's type (`CallEncoder.encode` raises `TypeError`); a result that
does not pickle ends its run Failed with the same kind of sentence (`encode_outcome`).

cloudpickle is imported only when plain pickle cannot do the job; runners that leave the
process depend on it (it comes with Dask and with the ``processes`` runner's plugin).
"""

from __future__ import annotations

import copyreg
import logging
import pickle
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from ._calls import RunDefaults, TaskRunCall
from ._events import TASK_RUN_LOGGER, TaskRunEvent, TaskRunOutcome, run_record
from ._flow_modules import BY_VALUE, ship_flow_modules
from ._remote import LEFT_ON_WORKER
from .context import FlowRun, ParameterLeftBehind, TaskRun
from .states import _NO_DATA, Failed, State, StateType

__all__ = [
    "CallEncoder",
    "decode_call",
    "dump_parts",
    "dumps",
    "encode_outcome",
    "encode_outcome_parts",
    "loads",
    "lost_run_outcome",
]

_PROTOCOL = 5
_MAX_DEPTH = 6

loads = pickle.loads


def _attrs_reducer(cls: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """``obj -> (cls, values)`` for an attrs class whose fields are all positional."""
    fields = attrs.fields(cls)
    if any(not f.init or f.kw_only or f.alias != f.name for f in fields):
        return None  # cannot be rebuilt positionally: it keeps its own pickling
    names = tuple(f.name for f in fields)
    return lambda obj: (cls, tuple([getattr(obj, n) for n in names]))


def _tuple_reducer(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    return lambda obj: (cls, tuple(obj))


def _dispatch_table() -> dict[type, Callable[[Any], Any]]:
    table: dict[type, Callable[[Any], Any]] = {
        uuid.UUID: lambda value: (uuid.UUID, (None, None, None, None, value.int)),
        # Enum members and the "no result" sentinel as globals: no Python reducer runs.
        StateType: lambda member: f"StateType.{member.name}",
        type(_NO_DATA): lambda _: "_NO_DATA",
        type(LEFT_ON_WORKER): lambda _: "LEFT_ON_WORKER",
    }
    for value_class in (TaskRun, FlowRun, State):
        reducer = _attrs_reducer(value_class)
        if reducer is not None:
            table[value_class] = reducer
    for tuple_class in (RunDefaults, TaskRunEvent, TaskRunOutcome):
        table[tuple_class] = _tuple_reducer(tuple_class)
    return table


_TABLE = _dispatch_table()


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, **_TABLE}


def _cloud_dump(obj: Any, parts: list[Any]) -> list[Any]:
    from collections import ChainMap

    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        raise TypeError(
            f"{type(obj).__name__} holds code of a script or a lambda, which only cloudpickle "
            "can send to a worker: pip install cloudpickle"
        ) from None
    parts.clear()
    pickler = cloudpickle.Pickler(parts, protocol=_PROTOCOL)
    pickler.dispatch_table = ChainMap(_TABLE, pickler.dispatch_table)
    pickler.dump(obj)
    return parts


class _Parts(list):  # type: ignore[type-arg]
    """What a pickler writes: its frames, and each large value written between them as it is."""

    write = list.append


#: The pickler writes a value of at least this many bytes (bytes, str, bytearray) outside its
#: frames, and every frame this large begins with the FRAME opcode (PEP 3154).
_FRAME_SIZE_TARGET = 64 * 1024


def _names_code(part: Any) -> bool:
    """Whether ``part`` may name a module: a frame may; a large value written as it is, is data."""
    if type(part) is not bytes:
        return False  # a large bytearray, or a buffer an object handed over (a NumPy array's)
    if len(part) < _FRAME_SIZE_TARGET or part[:1] == b"\x95" or part[:3] == b"\x80\x05\x95":
        for name in BY_VALUE:
            if name in part:
                return True
    return False


def dump_parts(obj: Any) -> list[Any]:
    """`dumps` before its pieces are joined: the stream's frames (bytes) and, between them,
    each value of 64 KiB or more as the pickler met it (bytes, bytearray, an object's buffer).

    Joined, they are `dumps`'s bytes; a runner that can send buffers side by side sends them
    as they are, without the copy a join makes of every large value.
    """
    parts = _Parts()
    try:
        _Pickler(parts, _PROTOCOL).dump(obj)
    except Exception:
        return _cloud_dump(obj, parts)
    # Module names are looked for in the frames only: scanning a large blob costs as much as
    # copying it, and module names are never inside one.
    for part in parts:
        if _names_code(part):
            return _cloud_dump(obj, parts)
    return parts


def dumps(obj: Any) -> bytes:
    """``obj`` as bytes that `loads` rebuilds in another process, on this host or another.

    Code of the flow's script travels by value; everything else by reference, as pickle does.
    """
    return b"".join(dump_parts(obj))


# -- naming what does not pickle --------------------------------------------------------------


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _pickles(value: Any) -> bool:
    try:
        dumps(value)
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
        namespace = getattr(value, "__globals__", {})
        yield from (namespace[n] for n in value.__code__.co_names if n in namespace)
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


def _unpicklable_call(call: TaskRunCall, where: str, exc: Exception) -> str:
    task = call.task
    for name, value in call.parameters.items():
        found = _culprit(value)
        if found is not None:
            held = "is" if found is value else "holds"
            return (
                f"Task {task.name!r} cannot be sent to {where} because its argument {name!r} "
                f"{held} a {_type_name(found)}, which cannot be pickled: pass a value that "
                "pickles, or create it inside the task."
            )
    found = _culprit(task.fn)
    if found is not None:
        what = "function" if found is task.fn else f"function refers to a {_type_name(found)}, which"
        return (
            f"Task {task.name!r} cannot be sent to {where} because its {what} cannot be "
            "pickled: define the task at module level and create such values inside it."
        )
    return f"Task {task.name!r} cannot be sent to {where}: {type(exc).__name__}: {exc}"


# -- calls ------------------------------------------------------------------------------------


class CallEncoder:
    """Pickles the calls of one started runner; the part runs of a task share, once.

    Made when a runner starts; the modules of the flow's own folder then travel by value,
    as the flow's script does (see `ship_flow_modules`). ``where`` names the destination in
    errors (``"the Dask workers"``). ``log_prints=True``
    turns on print capture for tasks that do not set it (a runner whose workers' stdout does
    not reach the flow's console, as Ray's).
    """

    def __init__(self, where: str = "the workers", *, log_prints: bool = False) -> None:
        ship_flow_modules()
        self.where = where
        self.log_prints = log_prints
        self._shared: dict[tuple[int, int, RunDefaults], tuple[Any, Any, bytes]] = {}
        self._flow_runs: dict[int, tuple[FlowRun, FlowRun]] = {}

    def _for_workers(self, flow_run: FlowRun) -> FlowRun:
        # The flow's parameters go along, as get_flow_run() reads them inside a task; each
        # is checked once per flow run, and one too large to repeat in every call (or one
        # that does not pickle) is left in the flow's process, named by a placeholder.
        found = self._flow_runs.get(id(flow_run))
        if found is None:
            parameters = {
                name: _parameter_for_workers(name, value) for name, value in flow_run.parameters.items()
            }
            found = self._flow_runs[id(flow_run)] = (flow_run, attrs.evolve(flow_run, parameters=parameters))
        return found[1]

    def encode(self, call: TaskRunCall) -> bytes:
        """The call as bytes for `decode_call`; `TypeError` with one sentence if it cannot go."""
        task, flow_run, defaults = call.task, call.flow_run, call.defaults
        key = (id(task), id(flow_run), defaults)
        try:
            entry = self._shared.get(key)
            if entry is None:
                if self.log_prints and task.log_prints is None and not defaults.log_prints:
                    defaults = defaults._replace(log_prints=True)
                shared = dumps((task, self._for_workers(flow_run), defaults))
                # The task and flow run are kept, so that their ids are not reused meanwhile.
                entry = self._shared[key] = (task, flow_run, len(shared).to_bytes(4, "big") + shared)
            # The run's identity apart from its parameters: a worker that cannot load the
            # task or an argument still knows which run to fail, and says why.
            identity = dumps(
                (call.task_run, call.upstream_names, call.log_level, call.allow_failure, call.retries_used)
            )
            return b"".join(
                (entry[2], len(identity).to_bytes(4, "big"), identity, dumps(call.parameters))
            )
        except Exception as exc:
            raise TypeError(_unpicklable_call(call, self.where, exc)) from None


#: A flow parameter pickled larger than this stays in the flow's process (see `get_flow_run`).
PARAMETER_MAX_BYTES = 64 * 1024


def _parameter_for_workers(name: str, value: Any) -> Any:
    if value is None or type(value) in (bool, int, float):
        return value
    try:
        size = len(dumps(value))
    except Exception as exc:
        return ParameterLeftBehind(name, type(value).__name__, f"it cannot be pickled ({type(exc).__name__})")
    if size > PARAMETER_MAX_BYTES:
        return ParameterLeftBehind(name, type(value).__name__, f"{size:,} bytes pickled")
    return value


_decoded: dict[bytes, tuple[Any, Any, RunDefaults]] = {}
_DECODED_MAX = 256


def decode_call(data: bytes | memoryview) -> TaskRunCall:
    """The call that `CallEncoder.encode` made; the shared part is loaded once per process.

    A task or an argument that cannot be loaded here (its module is not importable on this
    worker) gives a call whose task fails with one sentence naming the module, this host and
    what to do: the run ends Failed, not Crashed, and the worker carries on.
    """
    view = memoryview(data)
    end = 4 + int.from_bytes(view[:4], "big")
    shared = bytes(view[4:end])
    start = end + 4
    end = start + int.from_bytes(view[end:start], "big")
    task_run, names, log_level, allow, retries_used = loads(view[start:end])
    try:
        parts = _decoded.get(shared)
        if parts is None:
            if len(_decoded) >= _DECODED_MAX:
                _decoded.clear()
            parts = _decoded[shared] = loads(shared)
        parameters = loads(view[end:])
    except (ImportError, AttributeError) as exc:
        return _unloadable_call(task_run, names, log_level, allow, retries_used, exc)
    task, flow_run, defaults = parts
    return TaskRunCall(
        task_run, flow_run, task, parameters, (), names, log_level, None, allow, defaults, retries_used
    )


def _unloadable_call(
    task_run: TaskRun, names: Any, log_level: int, allow: Any, retries_used: int, exc: Exception
) -> TaskRunCall:
    from .tasks import Task

    module = getattr(exc, "name", None) or str(exc)
    message = (
        f"Task {task_run.task_name!r} could not be loaded on worker host {socket.gethostname()!r} "
        f"({type(exc).__name__}: {exc}): make module {module!r} importable there (install it "
        "on the workers), or keep it in the flow's own folder, beside the flow's script, whose "
        "modules taskloom sends by value."
    )

    def unloadable() -> None:
        raise ModuleNotFoundError(message)

    task: Any = Task(unloadable, name=task_run.task_name)
    flow_run = FlowRun(task_run.flow_run_id, task_run.flow_run_name or "?", "?")  # type: ignore[arg-type]
    return TaskRunCall(task_run, flow_run, task, {}, (), names, log_level, None, allow, RunDefaults(), retries_used)


# -- outcomes ---------------------------------------------------------------------------------


def encode_outcome(call: TaskRunCall, outcome: TaskRunOutcome) -> bytes:
    """The outcome as bytes for `loads`; never raises.

    A result that cannot be pickled ends the run Failed, in one sentence naming the task and
    the value's type; the worker carries on.
    """
    return b"".join(encode_outcome_parts(call, outcome))


def encode_outcome_parts(call: TaskRunCall, outcome: TaskRunOutcome) -> list[Any]:
    """`encode_outcome` in pieces, as `dump_parts` gives them; never raises."""
    try:
        return dump_parts(outcome)
    except Exception as exc:
        data = outcome.state.data
        culprit = _culprit(data) if data is not _NO_DATA else None
        what = f"a {_type_name(culprit)}" if culprit is not None else "a value"
        held = "" if culprit is data or culprit is None else f" (inside its {_type_name(data)})"
        message = (
            f"Task {call.task.name!r} returned {what}{held}, which could not be sent back from "
            f"the worker ({type(exc).__name__}: {exc}): return a value that pickles."
        )
        failed = Failed(message, exception=TypeError(message))
        # The events up to the run's last state, which held the value, then the Failed one.
        last = max((i for i, e in enumerate(outcome.events) if e.new is not None), default=len(outcome.events))
        lost = lost_run_outcome(call, failed)
        return dump_parts(TaskRunOutcome(failed, (*outcome.events[:last], *lost.events)))


def lost_run_outcome(call: TaskRunCall, state: State, line: str | None = None) -> TaskRunOutcome:
    """The outcome of a run whose end was decided outside the engine (its worker was lost,
    its call could not be sent): ``state`` and one log line, ``line`` or the engine's usual
    ``Finished in state ...``. Its events are numbered -1: the driver takes them whatever it
    saw of the run before.
    """
    message = line if line is not None else f"Finished in state {state!r}"
    level = logging.INFO if state.type is StateType.COMPLETED else logging.ERROR
    task_run = call.task_run
    record = run_record(
        TASK_RUN_LOGGER, level, message, task_run.name, task_run.id,
        task_run.flow_run_name, task_run.flow_run_id,
    )
    return TaskRunOutcome(state, (TaskRunEvent(-1, new=state), TaskRunEvent(-1, record=record)))
