"""`RayTaskFuture`: the runner's native handle on one task run's ``ObjectRef``.

It has the `concurrent.futures.Future` shape the core follows (``result``, ``done``,
``add_done_callback``) and keeps the run's two ``ObjectRef``s: ``state_ref``, the outcome
without a large result, which is all the flow's process receives, and ``ref``, the whole
outcome, which a downstream submit passes to Ray, so Ray resolves it on the worker that needs
it. A large result stays in the cluster's object store until `State.result()` asks for it
(a `taskloom.runners.RemoteResult`), and is freed when nothing refers to it. The runner's
`Collector` settles it with the pickled outcome (no condition variable per run), which is
loaded once, when first asked for.

When Ray reports an error instead of an outcome, the engine did not finish on the worker
(`run_task_call` never raises for a task's own errors). Two cases are told apart:

* an upstream run was lost, so Ray refused to run this one: this run did not start, and the
  engine's own rule gives it ``Pending('NotReady')``, as on every runner;
* the worker died or Ray could not move the call or its result: `result` raises
  `RayWorkerError` with one sentence, and the core marks the run Crashed.

A run in flight when the Ray head, or the node it runs on, is lost is settled by the runner's
`ClusterWatch` with a `HeadLostError` or `NodeLostError` (Ray would take minutes, or forever).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

import attrs

from taskloom.runners import (
    LEFT_ON_WORKER,
    RemoteResults,
    TaskRunCall,
    TaskRunOutcome,
    loads,
    run_task_call,
)
from taskloom.states import Completed, Crashed, State

from ._watch import HeadLostError, NodeLostError
from ._worker import load_outcome

if TYPE_CHECKING:
    from ._collect import Collector
    from ._watch import ClusterWatch

__all__ = ["RayTaskFuture", "RayWorkerError"]

# Guards the hand-over between the thread that settles a run and a thread that starts waiting.
_lock = threading.Lock()
_PENDING = object()


def _is_cancelled(exc: BaseException) -> bool:
    from ray import exceptions as rex

    return isinstance(exc, rex.TaskCancelledError) or (
        isinstance(exc, rex.RayTaskError) and isinstance(exc.cause, rex.TaskCancelledError)
    )


def _is_system_error(exc: BaseException) -> bool:
    """Whether Ray lost the run itself (a worker, a node, an object), not the user's code."""
    from ray import exceptions as rex

    return not isinstance(exc, (rex.RayTaskError, rex.TaskCancelledError))


class RayWorkerError(RuntimeError):
    """Ray could not run a task run to its end: a lost worker, node or object, or pickling."""


def _first_line(exc: BaseException) -> str:
    for line in str(exc).strip().splitlines():
        line = line.strip()
        if line and not line.startswith("ray::") and set(line) != {"^"}:
            return line
    return type(exc).__name__


def describe(exc: BaseException, run_name: str, task_name: str) -> RayWorkerError:
    """One sentence for a Ray error in place of an outcome."""
    from ray import exceptions as rex

    cause: BaseException | None = None
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
    elif isinstance(exc, rex.RaySystemError) and isinstance(exc.client_exc, BaseException):
        cause = exc.client_exc
    text = _first_line(cause if cause is not None else exc)
    if isinstance(cause, ImportError) or "No module named" in text:
        return RayWorkerError(
            f"Ray workers could not load task {task_name!r} ({text}): install its module on "
            "the workers, or ship it with runtime_env={'working_dir': ...} or "
            "{'py_modules': [...]}."
        )
    if isinstance(exc, (rex.RayTaskError, rex.RaySystemError)):
        return RayWorkerError(f"Ray could not return the outcome of task run {run_name!r}: {text}.")
    return RayWorkerError(
        f"The Ray worker running task run {run_name!r} was lost before it finished "
        f"({type(exc).__name__}: {text})."
    )


def _fetcher(ref: Any, name: str) -> Any:
    def fetch() -> Any:
        import ray

        try:
            return load_outcome(ray.get(ref)).state.data
        except Exception as exc:
            raise RuntimeError(
                f"The result of task run {name!r} stayed on the Ray cluster and cannot be "
                f"fetched from it ({type(exc).__name__}: {_first_line(exc)})."
            ) from exc

    return fetch


class RayTaskFuture:
    """A concurrent.futures-shaped handle on the `TaskRunOutcome` behind one ``ObjectRef``."""

    __slots__ = (
        "_call",
        "_callbacks",
        "_data",
        "_event",
        "_outcome",
        "_remote",
        "_task_run",
        "_upstream",
        "_watch",
        "ref",
        "state_ref",
    )

    def __init__(
        self,
        state_ref: Any,
        ref: Any,
        call: TaskRunCall,
        upstream: tuple[Any, ...] = (),
        remote: RemoteResults | None = None,
        watch: ClusterWatch | None = None,
        collector: Collector | None = None,
    ) -> None:
        self.state_ref = state_ref
        self.ref = ref
        self._remote = remote if remote is not None else RemoteResults()
        self._data: Any = _PENDING  # the pickled outcome, or the error Ray reported
        self._callbacks: list[Callable[[RayTaskFuture], object]] = []
        self._event: threading.Event | None = None
        self._outcome: TaskRunOutcome | None = None
        self._task_run = call.task_run
        self._watch = watch
        # For the NotReady case only: the upstream handles (or states), and the call (the
        # core keeps it until the run is final too).
        self._upstream = upstream
        self._call: TaskRunCall | None = call if upstream else None
        if state_ref is None:
            return  # `lost`: settled at once
        if watch is not None:
            watch.track(self)
        if collector is not None:
            collector.add(state_ref, self)

    @classmethod
    def lost(cls, call: TaskRunCall, error: HeadLostError, remote: RemoteResults | None = None) -> RayTaskFuture:
        """A run that never reached Ray because its head was lost: settled with ``error``."""
        future = cls(None, None, call, (), remote)
        future._settle(error)
        return future

    def __repr__(self) -> str:
        return f"RayTaskFuture({self._task_run.name!r}, done={self.done()})"

    # -- fed by the runner's collector ------------------------------------------------------

    def _completed(self, data: Any) -> None:
        if self._watch is not None:
            self._watch.done(self)
        self._settle(data)

    def _settle(self, data: Any) -> None:
        """Settle once: Ray's answer, or the watch's lost head or node, whichever comes first."""
        with _lock:
            if self._data is not _PENDING:
                return
            if not isinstance(data, BaseException):
                self._upstream, self._call = (), None  # only a failed run looks upstream
            self._data = data
            callbacks, self._callbacks = self._callbacks, []
            event = self._event
        if event is not None:
            event.set()
        for fn in callbacks:
            fn(self)

    # -- the concurrent.futures shape ---------------------------------------------------------

    def done(self) -> bool:
        return self._data is not _PENDING

    def add_done_callback(self, fn: Callable[[RayTaskFuture], object]) -> None:
        with _lock:
            if self._data is _PENDING:
                self._callbacks.append(fn)
                return
        fn(self)

    def result(self, timeout: float | None = None) -> TaskRunOutcome:
        if self._outcome is not None:
            return self._outcome
        if self._data is _PENDING and not self._wait(timeout):
            raise TimeoutError(f"Task run {self._task_run.name!r} is still running on Ray.")
        data = self._data
        if not isinstance(data, BaseException):
            outcome: TaskRunOutcome = loads(data)
            if outcome.state.data is LEFT_ON_WORKER:
                outcome = self._remote.wrap(outcome, _fetcher(self.ref, self._task_run.name))
            self._outcome = outcome
            self._data = None  # keep one copy of the result, not two
            return outcome
        if isinstance(data, (HeadLostError, NodeLostError)):
            raise data
        not_ready = self._not_ready()
        if not_ready is None:
            if _is_cancelled(data):
                raise CancelledError(f"Task run {self._task_run.name!r} was cancelled on Ray.")
            if self._watch is not None and _is_system_error(data):
                # A lost worker or node may be the head going down: then say that.
                lost = self._watch.confirm_lost()
                if lost is not None:
                    self._data = lost
                    raise lost from data
            raise describe(data, self._task_run.name, self._task_run.task_name) from data
        self._outcome = not_ready
        return not_ready

    def cancel(self) -> bool:
        """Ask Ray to stop the run (the core calls it when the flow run is interrupted)."""
        if self.done():
            return False
        import ray

        try:
            ray.cancel(self.ref)
        except Exception:
            return False
        return True

    def _wait(self, timeout: float | None) -> bool:
        with _lock:
            if self._data is not _PENDING:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def waits_for(self, lost: set[RayTaskFuture]) -> bool:
        """Whether one of ``lost`` is an upstream run of this one (Ray would wait for it)."""
        return any(handle in lost for handle in self._upstream)

    def upstream_running(self) -> bool:
        """Whether an upstream run of this one is still in flight (so Ray rightly waits)."""
        return any(type(handle) is RayTaskFuture and not handle.done() for handle in self._upstream)

    def failed(self) -> bool:
        """Whether Ray reported an error instead of an outcome (False until done)."""
        return isinstance(self._data, BaseException)

    def _not_ready(self) -> TaskRunOutcome | None:
        """The engine's outcome for this run when an upstream run was lost, else None."""
        if self._call is None:
            return None
        states: list[State] = []
        lost = False
        for handle in self._upstream:
            if not isinstance(handle, RayTaskFuture):
                states.append(handle)
            elif handle.failed():
                lost = True
                states.append(Crashed("Its Ray worker was lost."))
            elif handle.done():
                states.append(handle.result().state)
            else:
                states.append(Completed())  # not reached: an earlier upstream decides
        if not lost:
            return None
        # Without its parameters, nor anything that would run the task: with an upstream run
        # lost, the engine can only end it NotReady (not even with allow_failure).
        call = attrs.evolve(self._call, parameters={}, upstream=(), emit=None, allow_failure=())
        return run_task_call(call, *states)
