"""The thread pool under `ConcurrentTaskRunner`: its runs, and the threads that run them."""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any

from taskloom.runners import TaskRunCall, run_task_call

__all__: list[str] = []


class _PoolRun:
    """A thread-pool run that whoever comes first executes: a pool thread, or a task run
    that waits for it (`run_here`), so nested submits cannot deadlock a bounded pool.

    It is the `NativeFuture` the core follows, with `concurrent.futures.Future`'s rules
    (waiters wake before callbacks; ``cancel`` only before it starts). One lock guards who
    runs it and the hand-over of callbacks; a waiter that comes before the end makes a latch
    that the end releases. Nothing else per run: a burst of submitted runs waits in the
    queue all at once, and every object each holds is one more for the garbage collector's
    passes to walk (the one callback is kept as is, not in a list).
    """

    __slots__ = ("_call", "_callbacks", "_context", "_done", "_error", "_handles", "_latch", "_lock", "_outcome")

    def __init__(self, call: TaskRunCall, handles: Sequence[Any], context: contextvars.Context) -> None:
        self._lock = threading.Lock()
        self._call: TaskRunCall | None = call  # None once a thread took the run (or cancel did)
        self._handles = handles
        self._context: contextvars.Context | None = context
        self._done = False
        self._outcome: Any = None
        self._error: BaseException | None = None
        self._callbacks: Any = None  # None, one callable, or a list of them
        self._latch: threading.Lock | None = None

    # -- running it ---------------------------------------------------------------------

    def _take(self) -> TaskRunCall | None:
        """The call, to whoever asks first; None to everyone after."""
        with self._lock:
            call, self._call = self._call, None
        return call

    def run_here(self) -> None:
        call = self._take()
        if call is None:
            return
        handles, context = self._handles, self._context
        # Let go of the work: the call refers back to its TaskRunFuture, which refers to
        # this future, and a cycle would leave the whole run to the garbage collector.
        self._handles, self._context = (), None
        try:
            self._outcome = context.run(run_task_call, call, *handles)  # type: ignore[union-attr]
        except BaseException as exc:
            self._error = exc
        self._finish()

    def cancel(self) -> bool:
        """Cancel the run if no thread has started it; True if it will not run."""
        if self._take() is None:
            return self._error is not None and isinstance(self._error, CancelledError)
        self._handles, self._context = (), None
        self._error = CancelledError()
        self._finish()
        return True

    def _finish(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
            latch = self._latch
        if latch is not None:
            latch.release()
        if callbacks is None:
            return
        for fn in callbacks if type(callbacks) is list else (callbacks,):
            try:
                fn(self)
            except Exception:
                logging.getLogger(__name__).exception("A done-callback of a pool run raised.")

    # -- the NativeFuture protocol -------------------------------------------------------

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> Any:
        if not self._done:
            with self._lock:
                latch = self._latch
                if latch is None and not self._done:
                    latch = threading.Lock()
                    latch.acquire()  # released by `_finish`; held before others can see it
                    self._latch = latch
            if latch is not None:
                if not latch.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
                    raise TimeoutError()
                latch.release()  # let the next waiter through
        if self._error is not None:
            raise self._error
        return self._outcome

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        with self._lock:
            if not self._done:
                callbacks = self._callbacks
                if callbacks is None:
                    self._callbacks = fn
                elif type(callbacks) is list:
                    callbacks.append(fn)
                else:
                    self._callbacks = [callbacks, fn]
                return
        fn(self)


#: Threads started as soon as a run finds none idle: `ThreadPoolExecutor`'s default size.
_EAGER = min(32, (os.cpu_count() or 1) + 4)
#: How often the watch looks at a backlog once the eager threads are all busy.
_TICK = 0.001
#: Looks in a row that must find the backlog untouched and the process idle to grow the pool.
_IDLE_LOOKS = 2
#: A backlog that no thread has touched for this long gets a thread, busy process or not.
_STUCK = 0.1
#: The process's CPU time, as the watch reads it (tests pin it to say "busy").
_cpu_time = time.process_time

_Mailbox = queue.SimpleQueue  # one per thread: where a submit hands it a run
_LOOK: Any = object()  # put in a mailbox: look at the shared queue again


class _Threads:
    """Worker threads, ``ThreadPoolExecutor``'s policy up to its default size, and beyond it
    threads only for runs that would otherwise starve.

    A run goes to a thread that waits for one, handed over in that thread's own mailbox;
    with none waiting, it goes on the shared queue and, up to `_EAGER` threads, starts a
    thread, as in `ThreadPoolExecutor`. Beyond that, starting a thread per waiting run costs
    more than it gives whenever the runs hold the GIL: a burst of short runs would start
    dozens of threads that only take turns. So a watch thread looks at the shared queue every
    `_TICK` and grows the pool (at most doubling it) only when `_IDLE_LOOKS` looks in a row
    found that no thread took a run and the process used under half a CPU: the threads are
    blocked (sleeping, on I/O), and more threads are what helps. A backlog that nothing
    takes for `_STUCK` gets one more thread whatever the CPU does, so a run is never left
    waiting on busy threads.

    Handing a run to a waiting thread's mailbox, not counting idle threads as
    `ThreadPoolExecutor` does, keeps the hand-over exact: a run is never left queued while
    a thread waits idle.
    """

    def __init__(self, max_workers: int) -> None:
        self._queue: queue.SimpleQueue[_PoolRun | None] = queue.SimpleQueue()
        self._waiting: list[_Mailbox[_PoolRun | None]] = []  # threads with nothing to run
        self._max = max_workers
        self._eager = min(max_workers, _EAGER)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._taken = 0  # runs taken by threads; the watch only asks whether it moved
        self._backlog = threading.Event()  # set when a run waits and no eager thread is free
        #: Per worker thread: ``current``, the run it took, and ``next``, a run that waited
        #: for that one and goes next on the same thread (`follow`).
        self._here = threading.local()
        self._watch: threading.Thread | None = None
        self._closed = False

    def submit(self, run: _PoolRun | None) -> None:
        """Hand ``run`` to a waiting thread, or queue it and see that a thread will come."""
        # `self._waiting and`: in a burst no thread waits, and the call is saved.
        if self._waiting and self._hand_to_waiting(run):
            return
        self._queue.put(run)
        if run is not None and self._closed:
            # Submitted by a run still going after an error ended the flow run: no thread
            # will come for it.
            run.cancel()
            return
        # Queued, then look again: a thread that found the queue empty puts its mailbox out
        # and then looks at the queue again, so one of the two sees the other.
        if self._waiting and self._hand_to_waiting(_LOOK):
            return
        if run is None:
            return  # shutdown's wake-up of a thread that is busy now
        if len(self._threads) < self._eager:
            with self._lock:
                if len(self._threads) < self._eager and not self._closed:
                    try:
                        self._start()
                        return
                    except RuntimeError as exc:  # "can't start new thread"
                        self._refused(exc)
        if len(self._threads) < self._max and not self._backlog.is_set():
            self._backlog.set()
            if self._watch is None:
                with self._lock:
                    if self._watch is None and not self._closed:
                        self._watch = threading.Thread(
                            target=self._watch_backlog, name="taskloom-task-watch", daemon=True
                        )
                        self._watch.start()

    def _hand_to_waiting(self, item: Any) -> bool:
        """Put ``item`` in the mailbox of a thread that waits; False if none does (the caller
        has seen one waiting, but another submit may have taken it since)."""
        try:
            self._waiting.pop().put(item)  # list.pop is one step under the GIL
            return True
        except IndexError:
            return False

    def _refused(self, exc: RuntimeError) -> None:
        """The system would start no more threads: the pool stays as it is; the caller holds
        the lock."""
        self._max = self._eager = len(self._threads)
        logging.getLogger(__name__).warning("The thread pool stays at %d threads: %s.", self._max, exc)

    def _start(self) -> None:
        """Start one worker thread; the caller holds the lock."""
        thread = threading.Thread(
            target=self._work, name=f"taskloom-task-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        mailbox: _Mailbox[_PoolRun | None] = _Mailbox()
        waiting, take = self._waiting, self._queue.get_nowait
        here = self._here
        here.current = here.next = None
        while True:
            try:
                run = take()
            except queue.Empty:
                waiting.append(mailbox)
                try:
                    # A run queued by a submit that came just before the append found no
                    # thread waiting: take it rather than leave it to the watch.
                    run = take()
                except queue.Empty:
                    run = mailbox.get()
                else:
                    try:
                        waiting.remove(mailbox)
                    except ValueError:
                        # A submit took the mailbox meanwhile, and its run is on the way:
                        # that one is this thread's; the queued one is handed out anew.
                        self.submit(run)
                        run = mailbox.get()
            if run is _LOOK:
                continue  # a submit queued a run after this thread's second look
            if run is None:
                return
            while run is not None:
                self._taken += 1
                here.current = run
                run.run_here()
                run, here.next = here.next, None  # a run that waited for this one
            here.current = None

    def follow(self, finished: _PoolRun, run: _PoolRun) -> None:
        """Queue ``run``, whose last upstream run ``finished`` has just ended. On the worker
        thread that took ``finished`` from the pool, ``run`` goes next on that thread instead
        of to a thread that waits: a chain of runs stays on one thread, without a hand-over
        (a context switch) per link. Anywhere else (a run a waiting task ran inline, a
        cancel) it is submitted as usual."""
        here = self._here
        if getattr(here, "current", None) is finished and here.next is None and not self._closed:
            here.next = run
        else:
            self.submit(run)

    def _watch_backlog(self) -> None:
        untouched_since: float | None = None  # when a look first found the backlog untouched
        idle_looks = 0
        while True:
            self._backlog.wait()
            if self._closed:
                return
            taken, wall, cpu = self._taken, time.monotonic(), _cpu_time()
            time.sleep(_TICK)
            waiting = self._queue.qsize()
            if not waiting:
                self._backlog.clear()
                if self._closed:
                    return  # shutdown set the event before the clear
                waiting = self._queue.qsize()
                if not waiting:
                    untouched_since, idle_looks = None, 0
                    continue
                self._backlog.set()  # a run queued while the event was clear
            if self._taken != taken:
                untouched_since, idle_looks = None, 0
                continue
            if len(self._threads) >= self._max:
                self._backlog.clear()  # nothing to grow: submits no longer set it either
                untouched_since, idle_looks = None, 0
                continue
            now = time.monotonic()
            if untouched_since is None:
                untouched_since = wall
            busy = _cpu_time() - cpu > (now - wall) / 2
            idle_looks = 0 if busy else idle_looks + 1
            stuck = now - untouched_since >= _STUCK
            if idle_looks < _IDLE_LOOKS and not stuck:
                continue  # the threads hold the CPU: more of them would only take turns
            with self._lock:
                if self._closed:
                    return  # shutdown has counted its threads: start no more
                # Doubling at most, and one thread for a backlog stuck behind busy threads.
                more = 1 if idle_looks < _IDLE_LOOKS else len(self._threads)
                try:
                    for _ in range(min(waiting, self._max - len(self._threads), more)):
                        self._start()
                except RuntimeError as exc:  # "can't start new thread": the process's limit
                    self._refused(exc)
            untouched_since, idle_looks = None, 0

    def shutdown(self, wait: bool, cancel: bool) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            watch = self._watch
        if cancel:
            while True:
                try:
                    run = self._queue.get_nowait()
                except queue.Empty:
                    break
                if run is not None:
                    run.cancel()
        self._backlog.set()  # the watch, if any, sees _closed and ends
        for _ in threads:
            self.submit(None)  # to a waiting thread, or queued for a busy one
        if wait:
            for thread in threads:
                thread.join()
            if watch is not None:
                watch.join()
