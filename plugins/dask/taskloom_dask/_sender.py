"""The sender: one thread per started runner that hands queued runs to Dask, many at a time.

``.submit()`` in the flow pickles the call at once (so the run sees its arguments as they were,
and a value that does not pickle fails right there) and queues it. The sender sends what is
queued: the first run at once, and while one ``Client.map`` is on its way the next runs gather
behind it, so a loop of submits costs a few update messages to the scheduler, not one each.
A run goes out after the runs it takes as inputs (their Dask futures must exist first).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._handles import RunHandle, scheduler_lost
from ._worker import run_on_worker

if TYPE_CHECKING:
    from ._session import Session


class Sender:
    """Hands the runs of one session to Dask, in order, in batches, on its own thread."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._queue: list[RunHandle] = []
        self._busy = False
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskloom-dask-sender", daemon=True)
        self._thread.start()

    def put(self, handles: list[RunHandle]) -> None:
        """Queue runs for Dask; wake the sender unless it is sending (it takes them next)."""
        with self._lock:
            self._queue.extend(handles)
            if self._busy:
                return
            self._busy = True
        self._wake.set()

    def stop(self) -> list[RunHandle]:
        """Stop the thread; return the runs still queued (the flow run was interrupted)."""
        with self._lock:
            self._stopping = True
            unsent, self._queue = self._queue, []
        self._wake.set()
        self._thread.join(timeout=30)
        return unsent

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    batch, self._queue = self._queue, []
                    if not batch or self._stopping:
                        self._busy = False
                        break
                self._send(batch)
                del batch  # not kept while waiting: a sent run's handle holds its result later
            if self._stopping:
                return

    def _send(self, batch: list[RunHandle]) -> None:
        """Send ``batch`` in order: one Client.map per run of alike, independent calls."""
        group: list[RunHandle] = []
        members: set[int] = set()
        for handle in batch:
            alike = bool(group) and (
                handle.options == group[0].options and len(handle.inputs) == len(group[0].inputs)
            )
            depends = any(id(h) in members for h in handle.upstream)
            if group and (not alike or depends):
                self._send_group(group)
                group, members = [], set()
            group.append(handle)
            members.add(id(handle))
        if group:
            self._send_group(group)

    def _send_group(self, group: list[RunHandle]) -> None:
        session = self._session
        if session.client.status != "running":
            # The scheduler was lost and the client has not reconnected (yet): a run sent
            # now would wait for it, or be cancelled when the client gives up. Say so at
            # once; a crash retry sent after the client is back goes through.
            lost = scheduler_lost(session.client)
            for handle in group:
                handle.sendable = False
                session.finish(handle, exception=lost)
            return
        width = len(group[0].inputs)
        columns = [[_dask_input(h.inputs[j]) for h in group] for j in range(width)]
        keys = [session.key(h) for h in group]
        session.expect(keys)
        try:
            futures = session.client.map(
                run_on_worker,
                [h.blob for h in group],
                [session.token] * len(group),
                *columns,
                key=keys,
                pure=False,
                **group[0].options,
            )
        except Exception as exc:  # the client is gone, or Dask refused the options
            for key in keys:
                session.forget(key)
            for handle in group:
                handle.sendable = False
                session.finish(handle, exception=exc)
            return
        for handle, dask_future in zip(group, futures, strict=True):
            handle.blob = None
            handle.dask_future = dask_future
        session.watch(group)


def _dask_input(item: Any) -> Any:
    return item.dask_future if isinstance(item, RunHandle) else item
