"""How a task run ends when it does not end on its worker: the runner lost it (a crash, or a
timeout the runner enforced), it is retried after that, or the flow run was interrupted.
These are methods of `_FlowRunDriver` (``driver.on_crash``, ``driver.cancel_pending`` ...;
``self`` is the driver, typed ``Any`` so that this module, below the driver's, does not name
it), kept here to keep the driver's module short; the run's state itself changes only through
its future.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any

import attrs

from ._events import TaskRunOutcome
from ._worker import retry_delay
from .runners import CompletedNative, TaskRunTimedOut
from .states import AwaitingRetry, Cancelled, Crashed, State, StateType, TimedOut

if TYPE_CHECKING:
    from ._calls import TaskRunCall
    from .futures import TaskRunFuture
    from .tasks import Task

__all__ = ["cancel_pending", "end_interrupted", "end_unfinished", "on_crash", "state_hooks"]


def on_crash(self: Any, future: TaskRunFuture[Any], exc: BaseException) -> State | None:
    """The runner lost the run. Retry it if the task has retries left; else its final state."""
    call: TaskRunCall | None = future._call
    if self.cancelled:
        # This flow run's interrupt (Ctrl-C, SIGTERM, its timeout): the run was cancelled
        # before it started, or lost as the runner shut down.
        self._end_interrupted(future, lost=not isinstance(exc, CancelledError))
        return None
    if future._closed:
        return None
    if isinstance(exc, CancelledError):
        # A cancellation the runner reports by itself says its own reason; a runner that
        # lost its cluster raises a plain error instead, so the run crashes (or retries).
        state: State = Cancelled(f"Task run was cancelled by runner {self.runner.name!r}: {exc}")
        future._set_state(state)
        self.log_task(future.task_run, logging.INFO, f"Finished in state {state!r}")
        return state
    # A runner that enforces timeouts stopped the attempt at its deadline: TimedOut, not
    # Crashed, and retried the same way.
    timed_out = isinstance(exc, TaskRunTimedOut)
    reason = f"{type(exc).__name__}: {exc}" if not timed_out else str(exc)
    what = "Timed out" if timed_out else "Crashed"
    if call is not None and call.task.retries - call.retries_used > 0:
        delay = retry_delay(call.task, call.retries_used)
        future._set_state(AwaitingRetry(f"{what} ({reason}); retrying in {delay:.3g}s."))
        self.log_task(
            future.task_run,
            logging.WARNING,
            f"{what} ({reason}); retry {call.retries_used + 1} of {call.task.retries} "
            f"in {delay:.3g}s.",
        )
        self.children.end(future)  # the new attempt starts its own
        retry = attrs.evolve(call, retries_used=call.retries_used + 1)
        future._retry(retry)
        timer = threading.Timer(delay, self._hand_over, (retry, future))
        timer.daemon = True
        timer.start()
        return None
    if not future._claim():
        return None
    if timed_out:
        state = TimedOut(reason, exception=TimeoutError(f"{future.task_run.name}: {reason}"))
    else:
        state = Crashed(f"Task run crashed: {reason}", exception=exc)
    future._set_state(state)
    self.log_task(future.task_run, logging.ERROR, f"Finished in state {state!r}")
    if call is not None:
        self._state_hooks(future, call.task, call.task.on_failure if timed_out else call.task.on_crashed, state)
    return state

def state_hooks(self: Any, future: TaskRunFuture[Any], task: Task[..., Any], hooks: Any, state: State) -> None:
    """The task's own hooks for a final state decided here (a crash, a cut-off run)."""
    for hook in hooks:
        try:
            hook(task, future.task_run, state)
        except Exception as hook_exc:
            self.log_task(
                future.task_run,
                logging.ERROR,
                f"An error was encountered while running hook {getattr(hook, '__name__', hook)!r}: "
                f"{type(hook_exc).__name__}: {hook_exc}",
            )

def end_interrupted(self: Any, future: TaskRunFuture[Any], lost: bool = False) -> None:
    """End a run of an interrupted flow run now: Crashed if it was seen running or its
    runner lost it while it ran (it was cut off), else Cancelled. What the run reports
    later is dropped."""
    call: TaskRunCall | None = future._call
    seen = future._interrupt()
    if seen is None:
        return
    if seen.is_terminal():
        future._settle(seen)  # it ended, and said so live, before its handle came back
        return
    started = lost or seen.type is not StateType.PENDING
    if started:
        state: State = Crashed("Task run was cut off: the flow run was interrupted while it ran.")
    else:
        state = Cancelled("Task run was cancelled: the flow run was interrupted before it finished.")
    future._set_state(state)
    self.log_task(future.task_run, logging.ERROR if started else logging.INFO, f"Finished in state {state!r}")
    if started and call is not None:
        self._state_hooks(future, call.task, call.task.on_crashed, state)
    future._settle(state)


def cancel_pending(self: Any) -> None:
    """After an interrupt: runs not handed over, or not started, end Cancelled."""
    self.cancelled = True
    with self.lock:
        waiting = list(self.limits.waiting) if self.limits else []
        if self.limits:
            self.limits.waiting.clear()
        pending = list(self._pending)
    message = "Task run was cancelled before it ran: the flow run was interrupted."
    for _, future in waiting:
        future._attach(CompletedNative(TaskRunOutcome(Cancelled(message))))
    if not self._cancels:
        return
    for future in pending:
        if future.native is not None and not future.done():
            with contextlib.suppress(Exception):
                future.native.cancel()


def end_unfinished(self: Any) -> None:
    """After an interrupt and the runner's exit: every run still open ends now, so
    history and hooks never keep a run of a finished flow run Pending or Running."""
    with self.lock:
        pending = list(self._pending)
    for future in pending:
        self._end_interrupted(future)
