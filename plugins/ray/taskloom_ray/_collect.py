"""`Collector`: the thread of a runner that settles its runs, in batches, from Ray.

Ray's own completion callback (``ObjectRef._on_completed``) wakes Ray's I/O thread once per
run, which then takes the GIL and deserializes that one object while the flow's thread submits
more runs. With many runs in flight that costs more than the runs' own bookkeeping in the flow's
process, where raw Ray's user waits for a whole list with one ``ray.get``. So one thread per
runner waits instead: ``ray.wait`` on the oldest runs in flight, then one ``ray.get`` of those
that are ready, and hands each outcome to its `RayTaskFuture` as the callback did.

What it trades. While more runs are in flight than it waits on at once (`WINDOW`), it waits up
to `LINGER` for the rest of them before settling, so that one wake-up settles several. A run
submitted while the thread waits joins at the next wait, after at most `SHORT` seconds while
runs keep coming, and `POLL` once they stop (the thread waits longer and longer while nothing
changes, so long runs in flight do not keep it busy). Runs that finish out of order beyond the
window are found by a look at every run in flight each time a wait ends with none ready.

Ray's errors are told apart as before: a batch whose ``ray.get`` raises is read again run by
run, and each run gets the error Ray raised for it (a lost worker, a cancellation, ...).
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._handles import RayTaskFuture

__all__ = ["Collector"]

logger = logging.getLogger("taskloom.task_runner.ray")

#: How many of the oldest runs in flight one ``ray.wait`` follows (its cost grows with them).
WINDOW = 8
#: Seconds to wait for the rest of the window once one run is ready, while more runs are in
#: flight than the window holds (a backlog: then settling a few at once costs less).
LINGER = 0.005
#: Seconds of the first wait after runs were added, and the most it grows to while none are.
SHORT = 0.002
POLL = 0.02


class Collector:
    """Settles the runs `add`-ed to it from one daemon thread, until `stop`."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray
        self._pending: dict[Any, RayTaskFuture] = {}  # state_ref -> its run, oldest first
        self._cv = threading.Condition(threading.Lock())
        self._added = 0  # runs added since the thread last looked
        self._stopped = False
        self._broken: Exception | None = None  # why the thread stopped, if not by `stop`
        self._thread = threading.Thread(target=self._run, name="taskloom-ray-collect", daemon=True)
        self._thread.start()

    def add(self, state_ref: Any, future: RayTaskFuture) -> None:
        with self._cv:
            broken = self._broken
            if broken is None:
                self._pending[state_ref] = future
                self._added += 1
                if len(self._pending) == 1:
                    self._cv.notify()
        if broken is not None:
            _settle(future, broken)

    def stop(self) -> None:
        """Stop settling (the runner leaves its Ray, or the head is lost); waits for the thread
        to leave Ray, so that Ray can be shut down under it."""
        with self._cv:
            self._stopped = True
            self._pending.clear()
            self._cv.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL + LINGER + 1.0)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            with self._cv:
                if self._stopped:  # Ray was shut down under it: nothing left to settle
                    return
                # Anything else: no run it follows may wait forever. They, and runs added
                # later, get Ray's error, which the core ends Crashed.
                self._broken, pending = exc, self._pending
                self._pending = {}
            logger.warning("The Ray collector stopped (%r); its runs end Crashed.", exc)
            for future in pending.values():
                _settle(future, exc)

    def _loop(self) -> None:
        ray = self._ray
        timeout = SHORT
        while True:
            with self._cv:
                while not self._pending and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                backlog = len(self._pending) > WINDOW
                window = list(itertools.islice(self._pending, WINDOW))
                timeout = SHORT if self._added else min(2 * timeout, POLL)
                self._added = 0
            ready, rest = ray.wait(window, num_returns=1, timeout=timeout, fetch_local=True)
            if not ready:
                if not backlog:
                    continue
                with self._cv:
                    every = list(self._pending)
                ready, _ = ray.wait(every, num_returns=len(every), timeout=0, fetch_local=True)
                if not ready:
                    continue
            elif rest:
                more, _ = ray.wait(
                    rest, num_returns=len(rest), timeout=LINGER if backlog else 0, fetch_local=True
                )
                ready += more
            timeout = SHORT
            values = _get(ray, ready)
            with self._cv:
                if self._stopped:
                    return
                futures = [self._pending.pop(ref, None) for ref in ready]
            for future, value in zip(futures, values, strict=True):
                if future is not None:
                    _settle(future, value)


def _settle(future: RayTaskFuture, value: Any) -> None:
    try:
        future._completed(value)
    except Exception:  # one run's settling must not stop the others'
        logger.exception("Settling Ray task run %r failed.", future._task_run.name)


def _get(ray: Any, refs: list[Any]) -> list[Any]:
    """The values of ready ``refs``; for a run whose Ray task failed, the error Ray raises."""
    try:
        return list(ray.get(refs))
    except Exception:
        pass
    values: list[Any] = []
    for ref in refs:
        try:
            values.append(ray.get(ref))
        except Exception as exc:
            values.append(exc)
    return values
