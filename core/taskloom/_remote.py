"""Results that stay on the workers: what a runner with `Capability.REMOTE_RESULTS` uses.

On the worker, `outcome_without_data` puts `LEFT_ON_WORKER` where the result was; in the flow's
process, `RemoteResults.wrap` puts a `RemoteResult` there, which `State.result()` fetches once,
through the runner, on first use.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from ._events import TaskRunOutcome
from .states import _NO_DATA

__all__ = ["LEFT_ON_WORKER", "RemoteResult", "RemoteResults", "outcome_without_data"]


class _LeftOnWorker:
    """The data of a state whose result stayed where it was computed."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "LEFT_ON_WORKER"

    def __repr__(self) -> str:
        return "<left on the worker>"


#: What `outcome_without_data` puts in place of a result that stays on the worker.
LEFT_ON_WORKER: Any = _LeftOnWorker()


class RemoteResult:
    """A task run's result that stays on the cluster until someone asks for it.

    ``fetch`` brings the value to this process; the first `State.result()` calls it and the
    value is kept, so it moves once. Pickled (sent to another runner, persisted), it carries
    the value itself.
    """

    __slots__ = ("__weakref__", "_fetch", "_lock", "_value")

    def __init__(self, fetch: Callable[[], Any]) -> None:
        self._fetch: Callable[[], Any] | None = fetch
        self._value: Any = None
        self._lock = threading.Lock()

    @property
    def fetched(self) -> bool:
        return self._fetch is None

    def __taskloom_load__(self) -> Any:
        with self._lock:
            if self._fetch is not None:
                self._value = self._fetch()
                self._fetch = None  # and with it the runner's handle on the cluster's copy
            return self._value

    def __reduce__(self) -> tuple[Any, ...]:
        return (_identity, (self.__taskloom_load__(),))

    def __repr__(self) -> str:
        return "<result fetched from the cluster>" if self.fetched else "<result on the cluster>"


def _identity(value: Any) -> Any:
    return value


def outcome_without_data(outcome: TaskRunOutcome) -> TaskRunOutcome:
    """``outcome`` with its result replaced by `LEFT_ON_WORKER`, in its state and its events.

    A runner whose workers keep results (`Capability.REMOTE_RESULTS`) sends this back to the
    flow's process, and the full outcome to the runs that take it as input.
    """
    state = outcome.state
    if state.data is _NO_DATA:
        return outcome
    light = attrs.evolve(state, data=LEFT_ON_WORKER)
    events = tuple(e._replace(new=light) if e.new is state else e for e in outcome.events)
    return TaskRunOutcome(light, events)


class RemoteResults:
    """The results one started runner leaves on its workers.

    In the flow's process, `wrap` turns the outcome `outcome_without_data` made into one
    whose result is a `RemoteResult`. Before the runner lets its cluster go (``__exit__``),
    `fetch_referenced` brings the results that something still refers to (a future the flow
    returned, or kept beyond its run), so that they outlive the cluster; the rest never move.
    """

    def __init__(self) -> None:
        self._results: weakref.WeakSet[RemoteResult] = weakref.WeakSet()
        self._lock = threading.Lock()

    def wrap(self, outcome: TaskRunOutcome, fetch: Callable[[], Any]) -> TaskRunOutcome:
        """``outcome`` with its result a `RemoteResult` that calls ``fetch`` on first use."""
        state = outcome.state
        if state.data is not LEFT_ON_WORKER:
            return outcome
        result = RemoteResult(fetch)
        with self._lock:
            self._results.add(result)
        remote = attrs.evolve(state, data=result)
        events = tuple(
            e._replace(new=remote) if e.new is not None and e.new.data is LEFT_ON_WORKER else e
            for e in outcome.events
        )
        return TaskRunOutcome(remote, events)

    def fetch_referenced(self) -> None:
        """Fetch every result not fetched yet that something still refers to."""
        with self._lock:
            pending = any(not result.fetched for result in self._results)
        if not pending:
            return
        # What only reference cycles keep alive must not be fetched: it would move data
        # nobody can ask for. Paid only when results are still on the cluster.
        gc.collect()
        with self._lock:
            results = list(self._results)
        for result in results:
            if not result.fetched:
                try:
                    result.__taskloom_load__()
                except Exception:  # a lost worker: its result() raises the reason later
                    continue
