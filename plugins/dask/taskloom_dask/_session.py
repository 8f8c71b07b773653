"""The driver's side of one started Dask runner: submitting calls and collecting outcomes.

Each task run becomes one Dask task (`_worker.run_on_worker`) with an explicit key and
``pure=False``; upstream runs of the same runner are passed as Dask futures, so Dask resolves
them on the worker and the data moves between workers, not through the flow's process.

The core gets a `RunHandle` per run: a `concurrent.futures.Future` settled with the run's
`TaskRunOutcome`. Outcomes are fetched by one collector thread in batches (one ``gather`` for
every run that finished meanwhile), not one round trip per run.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from taskloom.engine import TaskRunCall, TaskRunEvent, TaskRunOutcome, run_task_call
from taskloom.runners import upstream_handles
from taskloom.states import Completed, Crashed, Failed, State

from ._pickling import QuietSerializationErrors, unpicklable_message
from ._worker import TOPIC, run_on_worker

_STOP = object()
_MAX_BATCH = 2000
_quiet = QuietSerializationErrors()


class RunHandle(Future):  # type: ignore[type-arg]
    """The native future the core holds for one task run: settled with its outcome."""

    def __init__(self, call: TaskRunCall | None, dask_future: Any, session: Session | None) -> None:
        super().__init__()
        self.call = call
        self.dask_future = dask_future
        self.session = session
        self.upstream: tuple[RunHandle, ...] = ()


def _submit_keywords() -> frozenset[str]:
    """The `Client.submit` keywords a task's runner_options may set (not key, pure, actor)."""
    from distributed import Client

    names = {
        name
        for name, p in inspect.signature(Client.submit).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    return frozenset(names - {"key", "pure", "actor", "actors"})


def dask_options(call: TaskRunCall, allowed: frozenset[str]) -> dict[str, Any]:
    options = call.task_run.runner_options
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(
            f"Task {call.task.name!r} has runner_options {sorted(unknown)} that "
            f"Dask's Client.submit does not take; use only {', '.join(sorted(allowed))}."
        )
    return options


def _key(call: TaskRunCall) -> str:
    # Dask groups keys by their leading words: the dashboard shows one row per task name.
    return f"{call.task_run.name}-{call.task_run.id.hex}"


def _driver_outcome(call: TaskRunCall, state: State, level: int = logging.ERROR) -> TaskRunOutcome:
    """An outcome made in the flow's process for a run whose worker never reported one."""
    record = logging.LogRecord("taskloom.task_runs", level, "", 0, "", None, None)
    record.msg = f"Finished in state {state!r}" if state.is_final() else str(state.message)
    record.task_run_name = call.task_run.name
    record.task_run_id = str(call.task_run.id)
    record.flow_run_name = call.task_run.flow_run_name
    record.flow_run_id = str(call.task_run.flow_run_id)
    # seq -1: accepted whatever the driver saw of this run before.
    events = (TaskRunEvent(-1, new=state), TaskRunEvent(-1, record=record))
    return TaskRunOutcome(state, events)


class Session:
    """A started runner: its client, the cluster it owns (if any), and the collector."""

    def __init__(self, client: Any, cluster: Any | None) -> None:
        self.client = client
        self.cluster = cluster
        self.token = uuid.uuid4().hex
        self._allowed = _submit_keywords()
        self._emitters: dict[str, Callable[[TaskRunEvent], None]] = {}
        self._pending: set[RunHandle] = set()
        self._lock = threading.Lock()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._collector = threading.Thread(
            target=self._collect_forever, name="taskloom-dask-collector", daemon=True
        )
        self._collector.start()
        client.subscribe_topic(TOPIC, self._on_events)
        for name in ("distributed.protocol.pickle", "distributed.protocol.core"):
            log = logging.getLogger(name)
            if _quiet not in log.filters:
                log.addFilter(_quiet)

    # -- submitting ----------------------------------------------------------------------

    def is_native(self, native: Any) -> bool:
        return isinstance(native, RunHandle) and native.session is self and native.dask_future is not None

    def _inputs(self, call: TaskRunCall) -> tuple[list[Any], tuple[RunHandle, ...]]:
        handles = upstream_handles(call, self.is_native)
        ours = tuple(h for h in handles if isinstance(h, RunHandle))
        return [h.dask_future if isinstance(h, RunHandle) else h for h in handles], ours

    def _track(self, call: TaskRunCall, dask_future: Any, upstream: tuple[RunHandle, ...]) -> RunHandle:
        handle = RunHandle(call, dask_future, self)
        handle.upstream = upstream
        run_id = str(call.task_run.id)
        with self._lock:
            self._pending.add(handle)
            if call.emit is not None:
                self._emitters[run_id] = call.emit
        dask_future.add_done_callback(lambda _: self._done.put(handle))
        return handle

    def submit(self, call: TaskRunCall) -> RunHandle:
        inputs, upstream = self._inputs(call)
        options = dask_options(call, self._allowed)
        _quiet.set_active(True)
        try:
            dask_future = self.client.submit(
                run_on_worker, call, self.token, *inputs, key=_key(call), pure=False, **options
            )
        except Exception as exc:
            message = unpicklable_message(call)
            if message is None:
                raise
            raise TypeError(message) from exc
        finally:
            _quiet.set_active(False)
        return self._track(call, dask_future, upstream)

    def map(self, calls: Sequence[TaskRunCall]) -> list[RunHandle]:
        """One ``Client.map`` per group of calls alike in options and number of inputs."""
        prepared = [(call, *self._inputs(call)) for call in calls]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, (call, inputs, _) in enumerate(prepared):
            groups.setdefault((id(call.task_run.runner_options), len(inputs)), []).append(index)
        handles: list[RunHandle | None] = [None] * len(calls)
        for (_, width), indexes in groups.items():
            group = [prepared[i] for i in indexes]
            options = dask_options(group[0][0], self._allowed)
            columns = [[inputs[j] for _, inputs, _ in group] for j in range(width)]
            _quiet.set_active(True)
            try:
                futures = self.client.map(
                    run_on_worker,
                    [call for call, _, _ in group],
                    [self.token] * len(group),
                    *columns,
                    key=[_key(call) for call, _, _ in group],
                    pure=False,
                    **options,
                )
            except Exception:
                futures = None  # something in the batch does not pickle: find which, one by one
            finally:
                _quiet.set_active(False)
            for position, i in enumerate(indexes):
                call, _, upstream = prepared[i]
                if futures is not None:
                    handles[i] = self._track(call, futures[position], upstream)
                else:
                    handles[i] = self._submit_or_fail(call)
        return [h for h in handles if h is not None]

    def _submit_or_fail(self, call: TaskRunCall) -> RunHandle:
        try:
            return self.submit(call)
        except Exception as exc:
            message = (
                f"Task run {call.task_run.name!r} could not be handed to runner 'dask': {exc}"
            )
            handle = RunHandle(None, None, self)
            handle.set_result(_driver_outcome(call, Failed(message, exception=exc)))
            return handle

    # -- what comes back -----------------------------------------------------------------

    def _on_events(self, event: tuple[float, Any]) -> None:
        """Live events from workers (on the client's event loop): route them to their runs."""
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("to") != self.token:
            return
        try:
            batch = pickle.loads(msg["events"])  # noqa: S301 - from this flow's own workers
        except Exception:
            return
        for run_id, run_event in batch:
            emit = self._emitters.get(run_id)
            if emit is not None:
                emit(run_event)

    def _collect_forever(self) -> None:
        while True:
            item = self._done.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._done.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            try:
                self._settle_batch(batch)
            except Exception as exc:  # never leave a run unsettled
                for handle in batch:
                    if not handle.done():
                        self._finish(handle, exception=exc)
            if stop:
                return

    def _settle_batch(self, batch: list[RunHandle]) -> None:
        finished = [h for h in batch if h.dask_future.status == "finished"]
        others = [h for h in batch if h.dask_future.status != "finished"]
        if finished:
            try:
                outcomes = self.client.gather([h.dask_future for h in finished])
            except Exception:
                others = finished + others  # find the one that failed, one by one
            else:
                for handle, outcome in zip(finished, outcomes, strict=True):
                    self._finish(handle, outcome=outcome)
        for handle in others:
            self._settle_one(handle)

    def _settle_one(self, handle: RunHandle) -> None:
        future = handle.dask_future
        status = future.status
        if status == "lost":  # its data was lost; Dask computes it again
            future.add_done_callback(lambda _: self._done.put(handle))
            return
        try:
            # Final here ("finished", "error" or "cancelled"): result() returns or raises at once,
            # except that a finished one fetches its data.
            outcome = future.result()
        except BaseException as exc:
            if status == "finished":
                # Computed, but the outcome could not travel back: it does not (un)pickle.
                assert handle.call is not None
                message = (
                    f"Task run {handle.call.task_run.name!r} finished on its Dask worker but its "
                    f"result could not be sent back ({type(exc).__name__}: {exc}); return a "
                    "value (and raise exceptions) that pickle."
                )
                state = Failed(message, exception=exc)
                self._finish(handle, outcome=_driver_outcome(handle.call, state))
                return
            failed_upstream = [u for u in handle.upstream if u.dask_future.status == "error"]
            if failed_upstream and handle.call is not None:
                # Dask never ran it: an input's worker died. Same as on any runner: NotReady.
                self._finish(handle, outcome=self._not_ready(handle))
                return
            self._finish(handle, exception=exc)
        else:
            self._finish(handle, outcome=outcome)

    def _not_ready(self, handle: RunHandle) -> TaskRunOutcome:
        assert handle.call is not None
        states = [
            Crashed("Its Dask task failed.") if u.dask_future.status == "error" else Completed()
            for u in handle.upstream
        ]
        # The engine itself decides and logs NotReady (it never calls the task for it).
        return run_task_call(handle.call, *states)

    def _finish(
        self,
        handle: RunHandle,
        outcome: TaskRunOutcome | None = None,
        exception: BaseException | None = None,
    ) -> None:
        call = handle.call
        with self._lock:
            self._pending.discard(handle)
            if call is not None:
                self._emitters.pop(str(call.task_run.id), None)
        handle.call = None
        if handle.done():
            return
        if exception is not None:
            handle.set_exception(exception)
        else:
            handle.set_result(outcome)

    # -- the end -------------------------------------------------------------------------

    def close(self, cancel: bool) -> None:
        """Stop collecting, cancel what still runs if asked, close the client (and cluster)."""
        with self._lock:
            pending = list(self._pending)
        if cancel and pending:
            try:
                self.client.cancel([h.dask_future for h in pending])
            except Exception:
                pass
        self._done.put(_STOP)
        self._collector.join(timeout=30)
        for handle in pending:
            if not handle.done():
                self._finish(
                    handle,
                    exception=RuntimeError("The flow run ended before this Dask task finished."),
                )
        try:
            self.client.unsubscribe_topic(TOPIC)
        except Exception:
            pass
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
