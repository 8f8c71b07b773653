"""The ``processes`` runner: task runs in spawned worker processes on this machine.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies, the executor
marks the whole pool broken and fails every run in flight. Here a worker that dies, or that
outlives a task's ``timeout_seconds``, costs only its own run: the pool kills it if needed,
starts a replacement, and carries on. Calls travel with cloudpickle, so tasks defined in a
script work; each worker is started with the ``spawn`` method (no inherited locks or threads).
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import pkgutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from multiprocessing.connection import Connection, wait
from typing import Any

import cloudpickle

from taskloom.runners import (
    CallEncoder,
    Capability,
    TaskRunCall,
    TaskRunner,
    TaskRunOutcome,
    decode_call,
    dumps,
    encode_outcome,
    loads,
    lost_run_outcome,
    run_task_call,
)
from taskloom.states import Failed, TimedOut

__all__ = ["ProcessTaskRunner", "WorkerDied"]

#: Seconds a worker may overrun a task's timeout before the pool kills it from outside (the
#: engine in the worker reports TimedOut itself at the timeout; this covers a worker so stuck
#: that it cannot even do that).
KILL_GRACE = 3.0


class WorkerDied(RuntimeError):
    """The worker process running a task run exited before sending its outcome."""


def _load_initializer(spec: str | Callable[..., Any] | None) -> Callable[..., Any] | None:
    if spec is None or callable(spec):
        return spec
    return pkgutil.resolve_name(spec)  # type: ignore[no-any-return]


def _worker_main(conn: Connection, initializer: bytes, initargs: bytes) -> None:
    """A worker's loop: receive a pickled call, run it, send the pickled outcome back."""
    # Ctrl-C in a terminal reaches the whole process group: the flow's process decides what
    # happens to the runs (it stops this worker), so the worker itself does not print a
    # KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init = cloudpickle.loads(initializer)
    if init is not None:
        init(*cloudpickle.loads(initargs))
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        call = decode_call(message)
        upstream = loads(conn.recv_bytes())
        outcome = run_task_call(call, *upstream)
        conn.send_bytes(encode_outcome(call, outcome))


class _Job:
    __slots__ = ("call", "cancelled", "future", "payload", "started", "upstream", "worker")

    def __init__(self, call: TaskRunCall, payload: bytes, future: Future[Any]) -> None:
        self.call = call
        self.payload = payload
        self.future = future
        self.upstream = list(call.upstream)
        self.started = 0.0
        self.cancelled = False
        self.worker: _Worker | None = None


class _Worker:
    __slots__ = ("conn", "job", "process")

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.job: _Job | None = None


class _Pool:
    """Worker processes and one dispatcher thread that feeds them and watches them."""

    def __init__(self, size: int, initializer: Any, initargs: tuple[Any, ...], start_method: str) -> None:
        self._context = multiprocessing.get_context(start_method)
        self._init = (cloudpickle.dumps(_load_initializer(initializer)), cloudpickle.dumps(tuple(initargs)))
        self._size = size
        self._lock = threading.Lock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._workers: list[_Worker] = [self._spawn() for _ in range(size)]
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        self._closing = False
        self._abandon = False  # set on an interrupt: the dispatcher stops at once
        self._thread = threading.Thread(target=self._loop, name="taskloom-processes", daemon=True)
        self._thread.start()

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child, *self._init), name="taskloom-worker", daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"x")

    def submit(self, call: TaskRunCall, payload: bytes) -> Future[Any]:
        future: Future[Any] = Future()
        job = _Job(call, payload, future)
        with self._lock:
            self._queue.append(job)
        for upstream in job.upstream:
            upstream.add_done_callback(lambda _: self._wake())
        self._wake()
        return future

    # -- the dispatcher thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._abandon or (
                    self._closing and not self._queue and all(w.job is None for w in self._workers)
                ):
                    return
                self._dispatch()
                busy = [w for w in self._workers if w.job is not None]
            waitables: list[Any] = [self._wake_r]
            for worker in self._workers:
                waitables.append(worker.process.sentinel)
                if worker.job is not None:
                    waitables.append(worker.conn)
            ready = wait(waitables, timeout=self._next_deadline(busy))
            if self._abandon:
                return
            if self._wake_r in ready:
                with contextlib.suppress(EOFError, OSError):
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
            settled: list[tuple[Future[Any], Any]] = []
            with self._lock:
                self._collect(ready, settled)
                self._enforce_deadlines(settled)
            # Outside the lock: a settled run's callbacks may submit more runs to this pool.
            for future, result in settled:
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _dispatch(self) -> None:
        idle = [w for w in self._workers if w.job is None and w.process.is_alive()]
        for job in list(self._queue):
            if not idle:
                return
            if job.future.cancelled():
                self._queue.remove(job)
                continue
            if not all(u.done() for u in job.upstream):
                continue
            self._queue.remove(job)
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                states = dumps([u.state for u in job.upstream])
            except Exception as exc:
                # Settled from another thread: this one holds the pool's lock.
                threading.Thread(target=job.future.set_exception, args=(exc,), daemon=True).start()
                continue
            worker = idle.pop()
            worker.job, job.worker, job.started = job, worker, time.monotonic()
            worker.conn.send_bytes(job.payload)
            worker.conn.send_bytes(states)

    def _collect(self, ready: list[Any], settled: list[tuple[Future[Any], Any]]) -> None:
        for worker in list(self._workers):
            job = worker.job
            if job is not None and worker.conn in ready:
                try:
                    data = worker.conn.recv_bytes()
                except (EOFError, OSError):
                    worker.process.join(1)  # the pipe closed because the worker died
                else:
                    worker.job = None
                    outcome = _load_outcome(job.call, data)
                    if outcome.state.name == "TimedOut":
                        # The engine stopped waiting, but the task's thread may still be busy
                        # in this process: replace the process so the work really stops.
                        self._replace(worker, kill=True)
                    settled.append((job.future, outcome))
                    continue
            if not worker.process.is_alive() and (worker.process.sentinel in ready or worker.conn in ready):
                self._replace(worker, kill=False)
                if job is not None:
                    code = worker.process.exitcode
                    settled.append((job.future, CancelledError() if job.cancelled else WorkerDied(
                        f"worker process {worker.process.pid} exited with code {code} while running the task"
                    )))

    def _next_deadline(self, busy: list[_Worker]) -> float | None:
        deadlines = [
            w.job.started + w.job.call.task.timeout_seconds + KILL_GRACE - time.monotonic()
            for w in busy
            if w.job is not None and w.job.call.task.timeout_seconds is not None
        ]
        return max(0.0, min(deadlines)) if deadlines else None

    def _enforce_deadlines(self, settled: list[tuple[Future[Any], Any]]) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            job = worker.job
            timeout = job.call.task.timeout_seconds if job is not None else None
            if job is None or timeout is None or now < job.started + timeout + KILL_GRACE:
                continue
            worker.job = None
            self._replace(worker, kill=True)
            message = f"Task run exceeded timeout of {timeout:g} second(s); its worker process was stopped"
            settled.append((job.future, TaskRunOutcome(TimedOut(message, exception=TimeoutError(message)))))

    def _replace(self, worker: _Worker, kill: bool) -> None:
        if kill and worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        with contextlib.suppress(OSError):
            worker.conn.close()
        index = self._workers.index(worker)
        if not self._closing:
            self._workers[index] = self._spawn()
        else:
            self._workers[index] = _Worker(worker.process, worker.conn)

    # -- shutting down -------------------------------------------------------------------------

    def shutdown(self, wait_for_runs: bool, cancel_running: bool = False) -> None:
        with self._lock:
            self._closing = True
            queued = list(self._queue)
            if not wait_for_runs:
                self._abandon = True
                self._queue.clear()
        if not wait_for_runs:
            for job in queued:
                job.future.cancel()  # outside the lock: its callbacks reach the flow's driver
        self._wake()
        # The dispatcher thread waits on the workers' pipes: it must be gone before they are
        # closed (else it fails with "handle is closed" and leaves its runs unsettled).
        self._thread.join(60)
        lost = []
        for worker in self._workers:
            if worker.job is not None:  # an interrupt: stop the work in flight
                worker.job.cancelled = cancel_running
                worker.process.kill()
                lost.append(worker.job)
                worker.job = None
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(b"")
        for worker in self._workers:
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            with contextlib.suppress(OSError):
                worker.conn.close()
        with self._lock:
            self._wake_r.close()
            self._wake_w.close()
        for job in lost:
            if job.cancelled and not job.future.done():
                job.future.set_exception(CancelledError())  # cancel_all(): Cancelled, not Crashed
            elif not job.future.done():
                job.future.set_exception(WorkerDied(
                    f"worker process {job.worker.process.pid if job.worker else '?'} was stopped "
                    "while running the task: the flow run was interrupted"
                ))

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]


class ProcessTaskRunner(TaskRunner):
    """Runs task runs in worker processes on this machine, started with ``spawn``.

    ``max_workers`` processes (default: the number of CPUs) each run one task run at a time;
    ``initializer`` (a function or ``"module:function"``) runs once in each new worker with
    ``initargs``. A task's ``timeout_seconds`` really stops it: the worker process is
    replaced. A worker that dies makes only its own run Crashed (retried if it has retries).
    Upstream results are sent to the worker that needs them, through the flow's process.
    """

    name = "processes"
    concurrency = "parallel"
    capabilities = Capability.CANCEL

    def __init__(
        self,
        max_workers: int | None = None,
        initializer: str | Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] | list[Any] = (),
    ) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}.")
        self.max_workers = max_workers
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self._pool: _Pool | None = None
        self._encoder = CallEncoder("a worker process")

    def __enter__(self) -> ProcessTaskRunner:
        self._pool = _Pool(self.max_workers or os.cpu_count() or 1, self.initializer, self.initargs, "spawn")
        self._encoder = CallEncoder("a worker process")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait_for_runs=exc_info[0] is None)
            self._pool = None

    def cancel_all(self) -> None:
        """Stop every run of this runner now: queued runs end Cancelled, running ones too
        (their worker processes are killed). Entering the runner again starts a new pool."""
        if self._pool is not None:
            self._pool.shutdown(wait_for_runs=False, cancel_running=True)
            self._pool = None

    def submit(self, call: TaskRunCall) -> Future[Any]:
        if self._pool is None:
            raise RuntimeError(f"{self!r} was used outside a flow run (it is not started).")
        return self._pool.submit(call, self._encoder.encode(call))

    def worker_pids(self) -> list[int]:
        """The process ids of the current workers (for tests and monitoring)."""
        return self._pool.pids() if self._pool is not None else []


def _load_outcome(call: TaskRunCall, data: bytes) -> TaskRunOutcome:
    """A worker's outcome; Failed, naming the task, if it cannot be loaded here (an exception
    here would stop the dispatcher thread, and every run of the flow with it)."""
    try:
        return loads(data)  # type: ignore[no-any-return]
    except Exception as exc:
        message = (
            f"Task {call.task.name!r}: its result could not be loaded in the flow's process: "
            f"{type(exc).__name__}: {exc}"
        )
        return lost_run_outcome(call, Failed(message, exception=exc))
