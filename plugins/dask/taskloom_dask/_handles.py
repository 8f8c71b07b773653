"""What the core holds for a task run on Dask, and the small rules about Dask's side of it."""

from __future__ import annotations

import inspect
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from taskloom.runners import TaskRunCall

if TYPE_CHECKING:
    from ._session import Session

#: Statuses of a Dask future that will never give a result.
GONE = frozenset({"error", "cancelled"})
#: The reason Dask gives to the futures it cancels when the client loses its scheduler.
SCHEDULER_LOST = "scheduler-connection-lost"


class SchedulerLostError(ConnectionError):
    """The client lost its Dask scheduler: the run's work on the cluster is gone.

    Not a `CancelledError`: nobody cancelled the run, so the core marks it Crashed, or retries
    it when the task has retries left (the client reconnects if the scheduler comes back).
    """


def scheduler_lost(client: Any) -> SchedulerLostError:
    """One sentence naming the scheduler's address and what was lost with it."""
    address = getattr(getattr(client, "scheduler", None), "address", None) or "?"
    return SchedulerLostError(
        f"Lost the connection to the Dask scheduler at {address} before this run finished; "
        "the run's task and any results kept on the cluster were lost with it."
    )


def is_scheduler_lost(exc: BaseException) -> bool:
    """Whether a Dask future's error is the cancellation of a client that lost its scheduler."""
    return getattr(exc, "reason", None) == SCHEDULER_LOST


class RunHandle(Future):  # type: ignore[type-arg]
    """The native future the core holds for one task run, settled with its `TaskRunOutcome`.

    Until the sender hands it to Dask, ``blob`` is the pickled call and ``inputs`` the upstream
    runs' handles (of this session) or final states; then ``dask_future`` is its Dask future.
    A run that never goes to Dask (its call did not pickle) has ``sendable`` false.
    """

    def __init__(self, call: TaskRunCall | None, session: Session | None) -> None:
        super().__init__()
        self.call = call
        self.session = session
        self.dask_future: Any = None
        self.blob: bytes | None = None
        self.inputs: list[Any] = []
        self.options: dict[str, Any] = {}
        self.sendable = True

    @property
    def upstream(self) -> list[RunHandle]:
        """The inputs that are runs of this session (passed to Dask as Dask futures)."""
        return [h for h in self.inputs if isinstance(h, RunHandle)]


def submit_keywords() -> frozenset[str]:
    """The `Client.submit` keywords a task's runner_options may set (not key, pure, actor)."""
    from distributed import Client

    names = {
        name
        for name, p in inspect.signature(Client.submit).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    return frozenset(names - {"key", "pure", "actor", "actors"})


def dask_options(call: TaskRunCall, allowed: frozenset[str]) -> dict[str, Any]:
    """The task's runner_options, checked: a key Client.submit does not take fails the run."""
    options = call.task_run.runner_options
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(
            f"Task {call.task.name!r} has runner_options {sorted(unknown)} that "
            f"Dask's Client.submit does not take; use only {', '.join(sorted(allowed))}."
        )
    return options

