"""What runs on a Dask worker: the engine's `run_task_call`, with live events on the side.

Events (states and log lines) of a task run always come back inside its outcome. While a run
is still going, they are also published on Dask's event channel (`Worker.log_event`), so
that the flow's console shows a long task's log lines as they happen. They go out in one
message per worker every `FLUSH_SECONDS`, and a run that ends before the next flush sends
nothing on the side: short tasks cost no extra message, and the driver drops the repeats by
sequence number either way.

A run whose result is large (over `INLINE_BYTES`, by Dask's own measure) returns a
`KeptOutcome`, and publishes its final state without the result on the same topic just before
its Dask task returns: Dask tells the flow's process the result's type with the task's
completion, and the flow's process settles the run from the published state, while the result
stays in the worker's memory.
"""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

from taskloom.runners import (
    TaskRunEvent,
    TaskRunOutcome,
    decode_call,
    dumps,
    encode_outcome,
    loads,
    outcome_without_data,
    run_task_call,
)

#: The one Dask event topic taskloom publishes on. One fixed name keeps the scheduler's event
#: log bounded (Dask keeps each topic's recent events); drivers pick theirs by ``to``.
TOPIC = "taskloom-events"
#: How long a run's events may wait on the worker before they are published.
FLUSH_SECONDS = 0.2
#: Up to this size (Dask's measure of the outcome) an outcome comes back whole, result and all,
#: in the collector's batched gather; above it the result stays on its worker.
INLINE_BYTES = 1 << 20


class _Outbox:
    """The events of the task runs running in this worker process, waiting to be published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        # task run id -> (worker, driver token, events not yet published)
        self._runs: dict[str, tuple[Any, str, list[TaskRunEvent]]] = {}
        self._thread: threading.Thread | None = None

    def add(self, worker: Any, token: str, run_id: str, event: TaskRunEvent) -> None:
        with self._lock:
            entry = self._runs.get(run_id)
            if entry is None:
                entry = self._runs[run_id] = (worker, token, [])
            entry[2].append(event)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._flush_forever, name="taskloom-events", daemon=True
                )
                self._thread.start()
        if not self._wake.is_set():
            self._wake.set()

    def discard(self, run_id: str) -> None:
        """Forget a finished run's pending events: its outcome carries them all."""
        with self._lock:
            self._runs.pop(run_id, None)

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            # Events wait here for a while, so a run that finishes meanwhile sends nothing.
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        messages: dict[tuple[int, str], tuple[Any, list[tuple[str, TaskRunEvent]]]] = {}
        with self._lock:
            for run_id, (worker, token, events) in self._runs.items():
                if events:
                    slot = messages.setdefault((id(worker), token), (worker, []))
                    slot[1].extend((run_id, event) for event in events)
                    events.clear()
        for (_, token), (worker, batch) in messages.items():
            try:
                # The wire format: a state's value of a class of the flow's script goes by value.
                payload = dumps(batch)
                worker.log_event(TOPIC, {"to": token, "events": payload})
            except Exception:
                pass


_outbox = _Outbox()


class KeptOutcome(TaskRunOutcome):
    """An outcome too large to come back whole: it stays on its worker, its state comes back."""

    __slots__ = ()


def _register_sizeof() -> None:
    """Tell Dask an outcome's size is its result's: walking its events costs more than the task.

    Dask measures every result it keeps (for memory limits and spilling); without this it
    walks the outcome's states and log records, about as long as running a small task.
    """
    from dask.sizeof import sizeof

    @sizeof.register(TaskRunOutcome)  # type: ignore[misc, no-untyped-call, untyped-decorator]
    def _outcome_size(outcome: TaskRunOutcome) -> int:
        return 1000 + int(sizeof(outcome.state.data))


_register_sizeof()


def run_on_worker(blob: bytes, token: str, *upstream: Any) -> TaskRunOutcome:
    """Run one pickled task run on this worker; ``upstream`` are the outcomes Dask resolved."""
    call = decode_call(blob)
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:  # not on a worker (a test calling it directly): events come back only
        return run_task_call(call, *upstream)
    run_id = str(call.task_run.id)

    def emit(event: TaskRunEvent) -> None:
        _outbox.add(worker, token, run_id, event)

    try:
        outcome = run_task_call(call, *upstream, emit=emit, keep_events=True)
    finally:
        _outbox.discard(run_id)
    return _kept_if_large(worker, token, _sendable(call, outcome))


def _kept_if_large(worker: Any, token: str, outcome: TaskRunOutcome) -> TaskRunOutcome:
    """A large outcome as a `KeptOutcome`, its state without the data published ahead of it.

    The message leaves on the worker's stream to the scheduler before the task's completion
    does, and the scheduler forwards both to the client in that order, so the flow's process
    has the state by the time it learns that the task finished. Without it (the state did not
    pickle, or the message was lost), the flow's process strips the data with a Dask task.
    """
    from dask.sizeof import sizeof

    if sizeof(outcome) <= INLINE_BYTES:
        return outcome
    try:
        payload = dumps(outcome_without_data(outcome))
        worker.log_event(TOPIC, {"to": token, "key": worker.get_current_task(), "final": payload})
    except Exception:
        pass
    return KeptOutcome(*outcome)


_PLAIN = frozenset({int, float, bool, str, bytes, type(None)})


def _dask_dumps(value: Any) -> None:
    """Pickle ``value`` as Dask will to send it (protocol 5 with buffers out of band, so a
    large array is not copied; cloudpickle if pickle refuses); raise if it does not pickle."""
    # Not the core's dumps: Dask sends this result itself, and dumps would copy its buffers.
    try:
        pickle.dumps(value, protocol=5, buffer_callback=lambda _: None)
    except Exception:
        import cloudpickle  # type: ignore[import-untyped]

        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda _: None)


def _sendable(call: Any, outcome: TaskRunOutcome) -> TaskRunOutcome:
    """The outcome, or the Failed one `encode_outcome` makes if it cannot travel back.

    Checked here, on the worker: Dask keeps a result in the worker's memory and fails only
    when the flow gathers it, with a message of its own tracebacks and more on the worker's
    console.
    """
    state = outcome.state
    try:
        if type(state.data) not in _PLAIN:
            _dask_dumps(state.data)
        if state.exception is not None:
            _dask_dumps(state.exception)
    except Exception:
        return loads(encode_outcome(call, outcome))  # type: ignore[no-any-return]
    return outcome
