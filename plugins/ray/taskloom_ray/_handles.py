"""`RayTaskFuture`: the runner's native handle on one task run's ``ObjectRef``.

It has the `concurrent.futures.Future` shape the core follows (``result``, ``done``,
``add_done_callback``) and keeps the ``ObjectRef`` itself, so a downstream submit passes the
ref to Ray, which resolves it on the worker.

When Ray reports an error instead of an outcome, the engine did not finish on the worker
(`run_task_call` never raises for a task's own errors). Two cases are told apart:

* an upstream run was lost, so Ray refused to run this one: this run did not start, and the
  engine's own rule gives it ``Pending('NotReady')``, as on every runner;
* the worker died or Ray could not move the call or its result: `result` raises
  `RayWorkerError` with one sentence, and the core marks the run Crashed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskloom.engine import TaskRunCall, TaskRunOutcome, run_task_call
from taskloom.states import Completed, Crashed, State

__all__ = ["RayTaskFuture", "RayWorkerError"]


class RayWorkerError(RuntimeError):
    """Ray could not run a task run to its end: a lost worker, node or object, or pickling."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("ray::") and set(line) != {"^"}:
            return line
    return type(exc).__name__


def describe(exc: BaseException, run_name: str, task_name: str) -> RayWorkerError:
    """One sentence for a Ray error in place of an outcome."""
    from ray import exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
        if isinstance(cause, (ImportError, AttributeError)):
            return RayWorkerError(
                f"Ray workers could not load task {task_name!r} ({type(cause).__name__}: "
                f"{cause}): install its module on the workers, or ship it with "
                "runtime_env={'py_modules': [...]} or {'working_dir': ...}."
            )
        return RayWorkerError(
            f"Ray could not return the outcome of task run {run_name!r} from its worker "
            f"({type(cause).__name__}: {_first_line(cause) if cause else _first_line(exc)}); "
            "return a picklable value."
        )
    return RayWorkerError(
        f"The Ray worker running task run {run_name!r} was lost before it finished "
        f"({type(exc).__name__}: {_first_line(exc)})."
    )


class RayTaskFuture:
    """A concurrent.futures-shaped handle on the `TaskRunOutcome` behind one ``ObjectRef``."""

    __slots__ = ("ref", "_future", "_task_run", "_light_call", "_upstream", "_outcome")

    def __init__(self, ref: Any, call: TaskRunCall, upstream: tuple[Any, ...] = ()) -> None:
        self.ref = ref
        self._future = ref.future()
        self._task_run = call.task_run
        # Kept for the NotReady case only, without the run's parameters.
        self._upstream = upstream  # RayTaskFuture or State, in the call's upstream order
        self._light_call: TaskRunCall | None = None
        if upstream:
            self._light_call = TaskRunCall(
                call.task_run, call.flow_run, call.task, {}, (), call.upstream_names, call.log_level
            )
        self._outcome: TaskRunOutcome | None = None

    def __repr__(self) -> str:
        return f"RayTaskFuture({self._task_run.name!r}, done={self.done()})"

    def done(self) -> bool:
        return bool(self._future.done())

    def add_done_callback(self, fn: Callable[[RayTaskFuture], object]) -> None:
        self._future.add_done_callback(lambda _: fn(self))

    def result(self, timeout: float | None = None) -> TaskRunOutcome:
        try:
            return self._future.result(timeout)  # type: ignore[no-any-return]
        except TimeoutError:
            raise
        except Exception as exc:
            if self._outcome is None:
                self._outcome = self._not_ready()
            if self._outcome is None:
                raise describe(exc, self._task_run.name, self._task_run.task_name) from exc
            return self._outcome

    def failed(self) -> bool:
        """Whether Ray reported an error instead of an outcome (False until done)."""
        return self.done() and self._future.exception() is not None

    def _not_ready(self) -> TaskRunOutcome | None:
        """The engine's outcome for this run when an upstream run was lost, else None."""
        if self._light_call is None:
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
                states.append(handle._future.result().state)
            else:
                states.append(Completed())  # not reached: an earlier upstream decides
        if not lost:
            return None
        return run_task_call(self._light_call, *states)
