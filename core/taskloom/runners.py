"""The runner contract: what a task runner is, and everything the core gives it.

A runner only *moves* task runs. The flow's process hands it a `TaskRunCall`; the runner
ships the call to where it runs, calls `run_task_call` there, and hands back a handle shaped
like `concurrent.futures.Future` (a `NativeFuture`) whose result is the run's
`TaskRunOutcome`. What a task run means (states, retries, logs, hooks, caching) is the
engine's, the same on every runner. A runner that leaves the process sends calls and
outcomes with the wire helpers here (`CallEncoder`, `decode_call`, `encode_outcome` or
`encode_outcome_parts`, `dumps`, `loads` or `loads_parts`), which every built-in runner shares.

This module is all a runner plugin imports from the core, besides `taskloom.states` and
`taskloom.context` for the values it reads. Runner classes from plugins are importable from
here by name, served from the registry::

    from taskloom.runners import SequentialTaskRunner   # from the taskloom-local plugin
"""

from __future__ import annotations

import copy
import enum
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal, Protocol

from . import plugins
from ._calls import RunDefaults, TaskRunCall
from ._events import TaskRunEvent, TaskRunOutcome
from ._pieces import loads_parts
from ._remote import LEFT_ON_WORKER, RemoteResult, RemoteResults, outcome_without_data
from ._sections import section_options
from ._wire import (
    CallEncoder,
    decode_call,
    dumps,
    encode_outcome,
    encode_outcome_parts,
    loads,
    lost_run_outcome,
)
from ._worker import run_task_call
from .config import ConfigError, Settings

__all__ = [
    "LEFT_ON_WORKER",
    "CallEncoder",
    "Capability",
    "CompletedNative",
    "NativeFuture",
    "RemoteResult",
    "RemoteResults",
    "RunDefaults",
    "TaskRunCall",
    "TaskRunEvent",
    "TaskRunOutcome",
    "TaskRunTimedOut",
    "TaskRunner",
    "decode_call",
    "dumps",
    "encode_outcome",
    "encode_outcome_parts",
    "loads",
    "loads_parts",
    "lost_run_outcome",
    "outcome_without_data",
    "resolve_task_runner",
    "run_task_call",
    "upstream_handles",
]

Concurrency = Literal["sequential", "concurrent", "parallel"]


class Capability(enum.Flag):
    """What a runner can do beyond the contract's minimum, declared in `TaskRunner.capabilities`.

    The core relies on a capability only when the runner declares it, never by looking for
    a method.
    """

    NONE = 0
    #: Calls run in the flow's process and deliver their events live through ``call.emit``
    #: (`run_task_call` does it by itself), or the runner forwards events to ``call.emit``
    #: while the run goes. Without it, ``call.emit`` is None and events come in the outcome.
    LIVE_EVENTS = enum.auto()
    #: The native futures have ``cancel()``: when a flow run is interrupted, the core cancels
    #: the runs that have not started.
    CANCEL = enum.auto()
    #: The native futures have ``run_here()``: a task run that waits for a run that has not
    #: started yet runs it in its own thread, so a bounded pool whose threads all wait cannot
    #: deadlock.
    RUN_WAITING_INLINE = enum.auto()
    #: Results stay on the workers: the flow's process receives each run's state without its
    #: data (`outcome_without_data` on the worker, `RemoteResults.wrap` here), a downstream
    #: run takes the data worker to worker, and `State.result()` fetches it once when asked.
    REMOTE_RESULTS = enum.auto()
    #: The runner enforces a task's ``timeout_seconds`` by stopping the worker at the deadline
    #: (a process runner that kills the process): the engine then starts no timer of its
    #: own, and the runner's native future raises `TaskRunTimedOut`; the core ends the attempt
    #: ``TimedOut`` and retries it if the task has retries left.
    ENFORCES_TIMEOUTS = enum.auto()


class TaskRunTimedOut(Exception):
    """Raised by a native future's ``result()`` when the runner stopped the run at its timeout.

    Only for runners that declare `Capability.ENFORCES_TIMEOUTS`.
    """


class NativeFuture(Protocol):
    """What ``submit`` returns: the `concurrent.futures.Future` shape (Dask futures have it).

    ``add_done_callback`` may call back on any thread (a pool's worker, a client's event
    loop): the core's callback only records the outcome and wakes the flow.
    """

    def result(self, timeout: float | None = None) -> Any: ...
    def done(self) -> bool: ...
    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...


class CompletedNative:
    """A `NativeFuture` that is already done: what a runner that ran the call inline returns.

    Cheaper than a `concurrent.futures.Future` (no condition variable) for the sequential
    runner and for tasks called directly in a flow.
    """

    __slots__ = ("_outcome",)

    def __init__(self, outcome: Any) -> None:
        self._outcome = outcome

    def result(self, timeout: float | None = None) -> Any:
        return self._outcome

    def done(self) -> bool:
        return True

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        fn(self)


class TaskRunner(Protocol):
    """The task runner contract: a context manager that submits task-run calls.

    ``__enter__`` starts what the runner needs (a pool, a cluster, a connection) and
    ``__exit__`` shuts down what it started, nothing else. Called without an exception, the
    flow run has waited for all its task runs; with one, it was interrupted (Ctrl-C, SIGTERM,
    its timeout), the core has already cancelled the runs not started (with
    `Capability.CANCEL`), and ``__exit__`` need not wait for the runs still going. A flow
    enters a fresh `duplicate` of the runner for each run.

    Subclass it to inherit the defaults below (`duplicate` and ``__repr__`` read the
    runner's settings back from its constructor's parameters, ``__eq__`` compares them); a
    class with the same members works as well.
    """

    #: The registered name, shown in logs and errors.
    name: ClassVar[str] = "runner"
    #: "sequential" runs each call inside ``submit``; "concurrent" overlaps calls in this
    #: process; "parallel" runs them in other processes or on other machines.
    concurrency: ClassVar[Concurrency] = "concurrent"
    #: The optional abilities the core may use (see `Capability`).
    capabilities: ClassVar[Capability] = Capability.NONE
    #: True when task runs may run on other hosts, which do not see this process's files
    #: (a runner given a cluster's address). The core then warns once when results are kept
    #: in a storage only this host sees. A property where it depends on the options.
    remote_workers: bool = False

    def __enter__(self) -> typing.Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def submit(self, call: TaskRunCall) -> NativeFuture:
        """Start running ``call`` and return a future of its `TaskRunOutcome`.

        Called in the flow's process, from the thread that submitted the task (or from a
        timer thread for a crash retry). Raising fails this run with the error's sentence.
        """
        raise NotImplementedError

    def map(self, calls: Sequence[TaskRunCall]) -> list[NativeFuture]:
        """Submit many calls; runners that can batch a round trip override this."""
        return [self.submit(call) for call in calls]

    def duplicate(self) -> typing.Self:
        """A fresh runner with the same options and nothing started, for one flow run.

        By default the runner's class is called again with its settings: each ``__init__``
        parameter, read back from the attribute of the same name (``self.max_workers``); what
        is set on the runner after it was made is not carried over. The new runner is used
        only if it reads back the same settings; otherwise (a parameter kept under another
        name or transformed, ``*args``/``**kwargs``, an ``__init__`` that refuses its own
        values) it is a shallow copy, as a runner without a constructor of its own gets. A
        runner whose ``__init__`` starts something should override this.
        """
        settings, complete = _settings(self)
        if complete and settings:
            args = [value for p, value in settings if p.kind is inspect.Parameter.POSITIONAL_ONLY]
            kwargs = {p.name: value for p, value in settings if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
            try:
                twin = type(self)(*args, **kwargs)
                same = _settings(twin) == (settings, complete)
            except Exception:  # a constructor that refuses its own values, an odd ==
                same = False
            if same:
                return twin
        return copy.copy(self)

    def __eq__(self, other: object) -> bool:
        # Prefect's rule: runners of one class with the same settings are equal, so
        # `runner.duplicate() == runner`.
        if type(self) is not type(other):
            return NotImplemented
        return _settings(self) == _settings(other)

    def __hash__(self) -> int:
        return hash(type(self))  # equal runners are of one class: consistent with __eq__

    def __repr__(self) -> str:
        """The class name and the settings not left at their defaults: ``LokyTaskRunner(max_workers=2)``.

        Settings are read as `duplicate` reads them; an empty dict, list or tuple where the
        parameter's default is None counts as left at its default.
        """
        given = ", ".join(f"{p.name}={value!r}" for p, value in _settings(self)[0] if not _is_default(p, value))
        return f"{type(self).__name__}({given})"


_CONTRACT = frozenset({"name", "concurrency", "capabilities", "remote_workers"})
_NAMED = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


def _settings(runner: object) -> tuple[list[tuple[inspect.Parameter, Any]], bool]:
    """The options a runner was made with: its ``__init__`` parameters, read back from the
    attributes of the same name, and whether that is all of them (what runner equality
    compares, and what `TaskRunner.duplicate` passes to the class)."""
    init = type(runner).__init__
    if init is object.__init__ or getattr(init, "__name__", "") == "_no_init_or_replace_init":
        return [], True  # no constructor of its own (typing.Protocol puts in a placeholder)
    try:
        parameters = list(inspect.signature(init).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return [], False
    found = [
        (p, getattr(runner, p.name))
        for p in parameters
        # A parameter named like a member of the contract (``name``) is not read back from it.
        if p.kind in _NAMED and p.name not in _CONTRACT and hasattr(runner, p.name)
    ]
    return found, len(found) == len(parameters)


def _is_default(parameter: inspect.Parameter, value: Any) -> bool:
    default = parameter.default
    if default is inspect.Parameter.empty:
        return False
    if value is default or (default is None and type(value) in (dict, list, tuple) and not value):
        return True
    try:
        return bool(value == default)
    except Exception:  # a value whose == does not give a truth value (an array)
        return False


def upstream_handles(call: TaskRunCall, is_native: Callable[[Any], bool]) -> list[Any]:
    """The handles a runner passes to `run_task_call` for ``call.upstream``.

    Upstream runs of this runner pass their native future (``is_native`` says which are);
    runs of another runner (a parent flow's, say) are waited for here and pass their state.
    """
    handles = []
    for future in call.upstream:
        native = getattr(future, "native", None)
        if native is not None and is_native(native):
            handles.append(native)
        else:
            future.wait()
            handles.append(future.state)
    return handles


def resolve_task_runner(spec: Any, settings: Settings) -> TaskRunner:
    """The runner a flow run uses: an instance, a class, a name, or None for the configured one.

    A name's options come from ``[runners.NAME]``, ``TASKLOOM_RUNNERS_NAME_*`` and
    ``--runner-option``; an unknown name or option raises before any task runs.
    """
    if spec is not None and not isinstance(spec, (str, type)):
        if not callable(getattr(spec, "submit", None)):
            raise TypeError(f"task_runner must be a runner name or a TaskRunner, got {spec!r}.")
        return spec.duplicate()  # type: ignore[no-any-return]
    if isinstance(spec, type):
        return spec()  # type: ignore[no-any-return]
    name = spec if spec is not None else settings["task_runner"]
    factory = plugins.lookup("task_runner", name).load()
    options = section_options("runners", name, factory, settings)
    try:
        return factory(**options)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        where = ", ".join(f"{k} from {src}" for k, (_, src) in settings.runner_options(name).items())
        raise ConfigError(
            f"Runner {name!r} refused its options ({where or 'none given'}): {exc}"
        ) from None


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    for registration in plugins.registered("task_runner").values():
        if registration.attribute_name == name:
            return registration.load()
    if name.endswith("TaskRunner"):
        message = f"No installed plugin provides taskloom.runners.{name}."
        hint = plugins.install_hint(name)
        if hint:
            message += f" Install it with: {hint}"
        raise ImportError(message)
    raise AttributeError(f"module 'taskloom.runners' has no attribute {name!r}")

