"""The collector: one thread per started runner that settles handles as Dask tasks finish.

Dask tells the client when a task is done; its handle is queued here, and the collector
fetches the outcomes of everything queued meanwhile with one ``gather``. While more runs are
in flight it waits up to `LINGER_SECONDS` first (until every run in flight has come, at most),
so a fan-out of thousands of runs costs one round trip per batch, not one per run; a lone run
is fetched at once. A run whose result is large has already sent its state without the data
(see `_worker`): it settles from that at once, with no round trip, and its result stays on its
worker.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from taskloom.runners import TaskRunOutcome, lost_run_outcome, outcome_without_data
from taskloom.states import Failed

from ._handles import GONE, RunHandle, is_scheduler_lost, scheduler_lost
from ._worker import INLINE_BYTES, KeptOutcome

if TYPE_CHECKING:
    from ._session import Session

_STOP = object()
MAX_BATCH = 2000
LINGER_SECONDS = 0.02


class Collector:
    """Settles the handles of one session, in batches, on its own thread."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="taskloom-dask-collector", daemon=True
        )
        self._thread.start()

    def put(self, handle: RunHandle) -> None:
        """Called (on Dask's callback thread) when the handle's Dask future is done."""
        self._queue.put(handle)

    def stop(self, timeout: float = 30) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = self._drain(batch)
            # A run whose state came ahead needs no round trip: it waits for no other run.
            batch = [h for h in batch if not self._settled_kept(h)]
            if batch and not stop:
                stop = self._linger(batch)
            try:
                if batch:
                    self._settle_batch(batch)
            except Exception as exc:  # never leave a run unsettled
                for handle in batch:
                    self._session.finish(handle, exception=exc)
            # Not kept while waiting for the next: a finished run's handle holds its result.
            del batch, item
            if stop:
                return

    def _linger(self, batch: list[Any]) -> bool:
        """While more runs are on their way, take them in the same round trip.

        Up to `LINGER_SECONDS`, and no longer than it takes for every run in flight to be in
        ``batch``: the last runs of a flow do not wait for runs that will not come. Returns
        whether the stop mark came.
        """
        deadline = time.monotonic() + LINGER_SECONDS
        while len(batch) < MAX_BATCH and self._session.in_flight() > len(batch):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                more = self._queue.get(timeout=remaining)
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            if not self._settled_kept(more):
                batch.append(more)
            if self._drain(batch):
                return True
        return False

    def _drain(self, batch: list[Any]) -> bool:
        """Move what is queued into ``batch``; return whether the stop mark came."""
        while len(batch) < MAX_BATCH:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is _STOP:
                return True
            batch.append(more)
        return False

    def _settle_batch(self, batch: list[RunHandle]) -> None:
        finished = [h for h in batch if h.dask_future.status == "finished"]
        others = [h for h in batch if h.dask_future.status != "finished"]
        small, large = self._by_size(finished)
        large = [h for h in large if not self._settle_light(h)]
        for part, gather in ((small, self._gather_whole), (large, self._gather_states)):
            if part:
                try:
                    gather(part)
                except Exception:
                    others = part + others  # find the one that failed, one by one
        for handle in others:
            self._settle_one(handle)

    def _by_size(self, finished: list[RunHandle]) -> tuple[list[RunHandle], list[RunHandle]]:
        """The runs whose outcome comes back whole, and those whose result stays on its worker.

        The worker measured each outcome and said which with its type (Dask sends the type
        with the task's completion); the scheduler is asked for the sizes of the others.
        """
        small = [h for h in finished if h.dask_future.type is TaskRunOutcome]
        large = [h for h in finished if h.dask_future.type is KeptOutcome]
        unknown = [h for h in finished if h.dask_future.type not in (TaskRunOutcome, KeptOutcome)]
        if not unknown:
            return small, large
        try:
            sizes = self._session.client.nbytes([h.dask_future.key for h in unknown], summary=False)
        except Exception:
            return small + unknown, large
        small += [h for h in unknown if sizes.get(h.dask_future.key, 0) <= INLINE_BYTES]
        large += [h for h in unknown if sizes.get(h.dask_future.key, 0) > INLINE_BYTES]
        return small, large

    def _settled_kept(self, handle: RunHandle) -> bool:
        """Settle at once a run whose result stays on its worker and whose state came."""
        try:
            future = handle.dask_future
            kept = future.status == "finished" and future.type is KeptOutcome
            return kept and self._settle_light(handle)
        except Exception:  # settled with its batch then, or alone
            return False

    def _settle_light(self, handle: RunHandle) -> bool:
        """Settle a run from the light state its worker published; False if it did not."""
        outcome = self._session.take_light(handle.dask_future.key)
        if outcome is None:
            return False
        remote = self._session.remote_results.wrap(outcome, _fetcher(handle))
        self._session.finish(handle, outcome=remote)
        return True

    def _gather_whole(self, handles: list[RunHandle]) -> None:
        outcomes = self._session.client.gather([h.dask_future for h in handles])
        for handle, outcome in zip(handles, outcomes, strict=True):
            self._session.finish(handle, outcome=outcome)

    def _gather_states(self, handles: list[RunHandle]) -> None:
        """Bring only the states: a small Dask task next to each result strips its data.

        For the large results whose light state did not come (not published, or lost).
        """
        client = self._session.client
        states = client.map(
            outcome_without_data,
            [h.dask_future for h in handles],
            key=[f"{h.dask_future.key}-state" for h in handles],
            pure=False,
        )
        outcomes = client.gather(states)
        for handle, outcome in zip(handles, outcomes, strict=True):
            remote = self._session.remote_results.wrap(outcome, _fetcher(handle))
            self._session.finish(handle, outcome=remote)

    def _settle_one(self, handle: RunHandle) -> None:
        future = handle.dask_future
        status = future.status
        if status == "lost":
            # Its data was lost with a worker; Dask computes it again. Wait aside for that.
            threading.Thread(target=self._when_found, args=(handle,), daemon=True).start()
            return
        try:
            # "finished", "error" or "cancelled": result() returns or raises at once, except
            # that a finished one fetches its data.
            outcome = future.result()
        except BaseException as exc:
            if status == "finished":
                self._session.finish(handle, outcome=_unsendable(handle, exc))
            elif is_scheduler_lost(exc):
                self._session.finish(handle, exception=scheduler_lost(self._session.client))
            elif handle.call is not None and any(
                u.dask_future is not None and u.dask_future.status in GONE for u in handle.upstream
            ):
                # Dask never ran it: an input's Dask task failed (its worker died). When those
                # runs are final (the flow may retry them), send it again with their final
                # handles or states: the engine then decides, as on any runner.
                self._after_upstream(handle)
            else:
                self._session.finish(handle, exception=exc)
        else:
            self._session.finish(handle, outcome=outcome)

    def _when_found(self, handle: RunHandle) -> None:
        try:
            handle.dask_future.result()
        except BaseException:
            pass
        self.put(handle)

    def _after_upstream(self, handle: RunHandle) -> None:
        assert handle.call is not None
        waiting = [f for f in handle.call.upstream if not f.done()]
        left = [len(waiting)]
        lock = threading.Lock()

        def one_done(_: Any) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                self._session.resend(handle)

        if not waiting:
            self._session.resend(handle)
        for upstream in waiting:
            upstream.add_done_callback(one_done)


def _fetcher(handle: RunHandle) -> Any:
    dask_future = handle.dask_future
    assert handle.call is not None
    name = handle.call.task_run.name

    def fetch() -> Any:
        try:
            return dask_future.result().state.data
        except Exception as exc:
            raise RuntimeError(
                f"The result of task run {name!r} stayed on the Dask cluster and cannot be "
                f"fetched from it ({type(exc).__name__}: {exc})."
            ) from exc

    return fetch


def _unsendable(handle: RunHandle, exc: BaseException) -> Any:
    """A Failed outcome for a run that finished but whose outcome did not travel back."""
    assert handle.call is not None
    message = (
        f"Task run {handle.call.task_run.name!r} finished on its Dask worker but its result "
        f"could not be sent back ({type(exc).__name__}: {exc}); return a value (and raise "
        "exceptions) that pickle."
    )
    return lost_run_outcome(handle.call, Failed(message, exception=exc))
