"""The driver's side of one started Dask runner: preparing runs, routing what comes back.

Each task run becomes one Dask task (`_worker.run_on_worker`) with an explicit key and
``pure=False``. Upstream runs of the same runner go to Dask as Dask futures, so Dask resolves
them on the worker and the data moves between workers, never back out of the flow's process.
The core gets a `RunHandle` per run: the `Sender` hands it to Dask, the `Collector` settles
it with the run's outcome.
"""

from __future__ import annotations

import functools
import itertools
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any

from taskloom.runners import (
    CallEncoder,
    RemoteResults,
    TaskRunCall,
    TaskRunEvent,
    TaskRunOutcome,
    loads,
    lost_run_outcome,
    upstream_handles,
)
from taskloom.states import Failed

from ._collect import Collector
from ._handles import GONE, RunHandle, dask_options, submit_keywords
from ._sender import Sender
from ._worker import TOPIC


class Session:
    """A started runner: its client, the cluster it owns (if any), its runs in flight."""

    def __init__(self, client: Any, cluster: Any | None) -> None:
        self.client = client
        self.cluster = cluster
        self.token = uuid.uuid4().hex  # names this session's live events on the shared topic
        self._attempts = itertools.count()
        self._allowed = submit_keywords()
        self._encoder = CallEncoder("the Dask workers")
        #: Results left on the workers; the ones still referred to are fetched at close.
        self.remote_results = RemoteResults()
        self._lock = threading.Lock()
        self._pending: set[RunHandle] = set()
        self._emitters: dict[str, Callable[[TaskRunEvent], None]] = {}
        #: Dask keys sent and not settled -> the light final state their worker published.
        self._light: dict[str, bytes | None] = {}
        self._unwatched: list[RunHandle] = []
        self._collector = Collector(self)
        self._sender = Sender(self)
        client.subscribe_topic(TOPIC, self._on_events)

    # -- preparing runs ------------------------------------------------------------------

    def key(self, handle: RunHandle) -> str:
        """A Dask key unique per sending (a crashed run may be sent again).

        Dask groups keys by their leading words: the dashboard shows one row per task name.
        """
        assert handle.call is not None
        task_run = handle.call.task_run
        return f"{task_run.name}-{task_run.id.hex}-{next(self._attempts)}"

    def is_native(self, native: Any) -> bool:
        """Whether an upstream run's handle goes to Dask as a Dask future (else as its state)."""
        if not isinstance(native, RunHandle) or native.session is not self or not native.sendable:
            return False
        future = native.dask_future
        return future is None or future.status not in GONE  # None: queued, sent before us

    def _prepare(self, call: TaskRunCall, handle: RunHandle | None = None) -> RunHandle:
        """Check and pickle the call now (errors belong to this submit); queue it after."""
        options = dask_options(call, self._allowed)
        blob = self._encoder.encode(call)
        inputs = upstream_handles(call, self.is_native)
        if handle is None:
            handle = RunHandle(call, self)
            with self._lock:
                self._pending.add(handle)
                if call.emit is not None:
                    self._emitters[str(call.task_run.id)] = call.emit
        handle.blob, handle.inputs, handle.options = blob, inputs, options
        if handle.dask_future is not None:  # sent again: its first key is done with
            self.forget(handle.dask_future.key)
        handle.dask_future = None
        return handle

    def submit(self, call: TaskRunCall) -> RunHandle:
        handle = self._prepare(call)
        self._sender.put([handle])
        return handle

    def map(self, calls: Sequence[TaskRunCall]) -> list[RunHandle]:
        """Queue every call at once: they go to Dask in one ``Client.map`` per alike group.

        A call that cannot be sent (it does not pickle, or its options are wrong) fails alone,
        with the sentence saying why; the others go.
        """
        handles: list[RunHandle] = []
        for call in calls:
            try:
                handles.append(self._prepare(call))
            except Exception as exc:
                handles.append(self._failed(call, exc))
        self._sender.put([h for h in handles if h.sendable])
        return handles

    def _failed(self, call: TaskRunCall, exc: Exception) -> RunHandle:
        """A handle settled with Failed at once, as the core does when a submit raises."""
        message = f"Task run {call.task_run.name!r} could not be handed to runner 'dask': {exc}"
        handle = RunHandle(None, self)
        handle.sendable = False
        handle.set_result(lost_run_outcome(call, Failed(message, exception=exc), message))
        return handle

    def resend(self, handle: RunHandle) -> None:
        """Send a run again, into the same handle (its inputs' first Dask tasks failed)."""
        assert handle.call is not None
        try:
            self._prepare(handle.call, handle)
        except Exception as exc:
            self.finish(handle, exception=exc)
            return
        self._sender.put([handle])

    # -- following runs ------------------------------------------------------------------

    def watch(self, handles: list[RunHandle]) -> None:
        """Hand ``handles`` to the collector once their Dask futures are done.

        Done callbacks are registered from the client's event loop, many at a time: one
        wake-up of the loop per batch, not one per run.
        """
        with self._lock:
            scheduled = bool(self._unwatched)
            self._unwatched.extend(handles)
        if not scheduled:
            self.client.loop.add_callback(self._register_watches)

    def _register_watches(self) -> None:
        with self._lock:
            handles, self._unwatched = self._unwatched, []
        put = self._collector.put
        for handle in handles:
            # Through a weak reference: the Dask future keeps its callbacks, and the handle
            # keeps the Dask future; a cycle would keep the run's result (and the cluster's
            # copy) alive until the garbage collector found it. The core holds the handle
            # until the run is final.
            handle.dask_future.add_done_callback(functools.partial(_put_if_alive, put, weakref.ref(handle)))

    def in_flight(self) -> int:
        return len(self._pending)

    def expect(self, keys: list[str]) -> None:
        """Watch for the light final states of these Dask keys (before they are sent)."""
        with self._lock:
            for key in keys:
                self._light[key] = None

    def take_light(self, key: str) -> TaskRunOutcome | None:
        """The final state without its data that the run's worker published, if it did."""
        with self._lock:
            payload = self._light.pop(key, None)
        if payload is None:
            return None
        try:
            return loads(payload)  # type: ignore[no-any-return]
        except Exception:
            return None

    def forget(self, key: str) -> None:
        with self._lock:
            self._light.pop(key, None)

    def _on_events(self, event: tuple[float, Any]) -> None:
        """Events from workers (on the client's event loop): a large result's light final
        state is kept for the collector, live events are routed to their runs."""
        msg = event[1]
        if not isinstance(msg, dict) or msg.get("to") != self.token:
            return
        if "final" in msg:
            with self._lock:
                # Only for a key still waited for: a result computed again after its run
                # settled (its worker died) must not leave its state here.
                if msg.get("key") in self._light:
                    self._light[msg["key"]] = msg["final"]
            return
        try:
            batch = loads(msg["events"])  # from this flow's own workers
        except Exception:
            return
        for run_id, run_event in batch:
            emit = self._emitters.get(run_id)
            if emit is not None:
                emit(run_event)

    def finish(
        self,
        handle: RunHandle,
        outcome: TaskRunOutcome | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Settle a handle (once): the core then replays the outcome or marks a crash."""
        call = handle.call
        with self._lock:
            self._pending.discard(handle)
            if call is not None:
                self._emitters.pop(str(call.task_run.id), None)
        if handle.dask_future is not None:
            self.forget(handle.dask_future.key)
        handle.call = None
        handle.blob = None
        handle.inputs = []  # let go of the inputs' Dask futures (their data on the workers)
        if handle.done():
            return
        if exception is not None:
            handle.set_exception(exception)
        else:
            handle.set_result(outcome)

    # -- the end -------------------------------------------------------------------------

    def close(self, cancel: bool) -> None:
        """Stop sending and collecting, cancel what still runs if asked, close the client."""
        unsent = self._sender.stop()
        if cancel:
            with self._lock:
                futures = [h.dask_future for h in self._pending if h.dask_future is not None]
            try:
                self.client.cancel(futures)
            except Exception:  # closing anyway
                pass
            self._collector.stop()
        else:
            # Stopped first: until its last batch is done, the collector holds that batch's
            # handles, and with them results nothing else refers to, which would be fetched.
            self._collector.stop()
            self.remote_results.fetch_referenced()
        with self._lock:
            pending = list(self._pending)
        interrupted = CancelledError("The flow run ended before this Dask task finished.")
        for handle in [*unsent, *pending]:  # the core marks them Cancelled
            self.finish(handle, exception=interrupted)
        try:
            self.client.unsubscribe_topic(TOPIC)
        except Exception:  # closing anyway
            pass
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _put_if_alive(put: Callable[[RunHandle], None], ref: weakref.ref[RunHandle], _: Any) -> None:
    handle = ref()
    if handle is not None:
        put(handle)
