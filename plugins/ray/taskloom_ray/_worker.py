"""What runs on a Ray worker: the engine's `run_task_call` over a pickled call.

The call arrives pickled by the driver in the core's wire format (`taskloom.runners.CallEncoder`;
Ray passes ``bytes`` through untouched, without its own per-object pickling hook); Ray resolves the upstream ``ObjectRef``
arguments to their pickled `TaskRunOutcome` on the worker before the call, so results move
from worker to worker without passing through the flow's process. The outcome, carrying the
run's states and log records, goes back pickled the same way, and the driver replays it.

Prints: Ray forwards a worker's stdout to the driver as ``(print_values pid=4242) AAAA``,
outside taskloom's format and order. With the runner's ``capture_prints`` (the default), a
task that does not set ``log_prints`` itself runs with it on (the encoder sets it in the
call's run defaults), so its ``print()`` lines become INFO lines of its run, shown in the
flow's console with the run's name, by the engine's own ``log_prints``.
"""

from __future__ import annotations

import pickle
from typing import Any

from taskloom.runners import (
    decode_call,
    dumps,
    encode_outcome_parts,
    loads,
    loads_parts,
    outcome_without_data,
    run_task_call,
)
from taskloom.states import State

__all__ = ["NODE_NOTES", "NOTES_NAMESPACE", "load_outcome", "run_call", "run_call_alone"]


#: Up to this size an outcome goes to the flow's process whole: Ray itself hands objects of
#: up to 100 KiB to their owner inline, so leaving them on the worker would save nothing.
INLINE_BYTES = 100 * 1024


#: Where a run notes, in the cluster's key-value store, the node it runs on (see `_note_node`).
NODE_NOTES = "runs-on/"
NOTES_NAMESPACE = "taskloom"


def _note_node() -> str | None:
    """Note this run's node under ``runs-on/<job>/<node>/<Ray task id>``; returns the key.

    On a cluster of several nodes, a node whose link goes down is marked dead by the head,
    but Ray fails a task already running there only when its connection times out (minutes):
    the flow's process looks up which of its runs were on the dead node and ends them (`_watch`).
    """
    import ray
    from ray.experimental import internal_kv

    here = ray.get_runtime_context()
    key = f"{NODE_NOTES}{here.get_job_id()}/{here.get_node_id()}/{here.get_task_id()}"
    try:
        internal_kv._internal_kv_put(key, b"", namespace=NOTES_NAMESPACE)
    except Exception:  # the run goes on; only a lost node would go unnoticed for longer
        return None
    return key


def _forget_node(key: str) -> None:
    from ray.experimental import internal_kv

    try:
        internal_kv._internal_kv_del(key, namespace=NOTES_NAMESPACE)
    except Exception:  # the note outlives the run; the flow's process ignores it
        pass


def _cancelled_by_ray() -> bool:
    import ray

    try:
        return bool(ray.get_runtime_context().is_canceled())
    except Exception:  # not in a Ray task (or an old Ray): not Ray's cancellation
        return False


def _run(data: bytes, upstream: tuple[Any, ...], note_node: bool) -> tuple[bytes, Any]:
    """The outcome for the flow's process, and the whole outcome for downstream runs."""
    call = decode_call(data)
    key = _note_node() if note_node else None
    try:
        # An upstream outcome is bytes (inlined), pieces in the object store (`_for_store`),
        # or the state of a run of another runner.
        outcome = run_task_call(call, *[u if isinstance(u, State) else load_outcome(u) for u in upstream])
    finally:
        if key is not None:
            _forget_node(key)
    if outcome.state.is_crashed() and _cancelled_by_ray():
        # ray.cancel interrupts the task with a KeyboardInterrupt, which the engine takes for
        # the task's own (Crashed): Ray reports the cancellation instead, and the flow's
        # process marks the run Cancelled, as after any interrupt of the flow run.
        raise KeyboardInterrupt
    parts = encode_outcome_parts(call, outcome)
    if sum(map(_size, parts)) <= INLINE_BYTES:
        whole = b"".join(parts)
        return whole, whole
    return dumps(outcome_without_data(outcome)), _for_store(parts)


def _size(part: Any) -> int:
    return len(part) if type(part) is bytes else memoryview(part).nbytes


def _for_store(parts: list[Any]) -> tuple[Any, ...]:
    """The pickled outcome's pieces as Ray should store them: each large value as a
    PickleBuffer over the result's own memory, the small pieces between them joined.

    Ray copies a PickleBuffer into its object store as it is, and hands it to a downstream
    run as a view of the store, where `load_outcome` reads it once (`loads_parts`). Joined
    into one bytes first, every large value would be copied once more on the worker;
    returned as bytes, Ray would pickle it again here and unpickle it into a copy there.
    """
    pieces: list[Any] = []
    small: list[Any] = []
    for part in (*parts, None):
        if part is not None and _size(part) < INLINE_BYTES:
            small.append(part)
            continue
        if small:
            joined = b"".join(small)
            pieces.append(pickle.PickleBuffer(joined) if len(joined) >= INLINE_BYTES else joined)
            small = []
        if part is not None:
            pieces.append(pickle.PickleBuffer(part))
    return tuple(pieces)


def load_outcome(data: Any) -> Any:
    """The outcome Ray handed over: pickled bytes (or a view of them), or `_for_store` pieces."""
    if type(data) is tuple:
        return loads_parts(data)
    return loads(data)


def run_call(data: bytes, *upstream: Any, note_node: bool = False) -> tuple[bytes, Any]:
    """Run one pickled call here (see `taskloom.runners.CallEncoder`); ``upstream`` are the
    outcomes Ray resolved; ``note_node`` notes where it runs (a cluster of several nodes)."""
    return _run(data, upstream, note_node)


def run_call_alone(data: bytes, *upstream: Any, note_node: bool = False) -> tuple[bytes, Any]:
    """`run_call` for a worker process that Ray ends after the call (``max_calls=1``).

    Used for tasks with a ``timeout_seconds``: the engine reports TimedOut at the timeout and
    abandons the task's thread, which may still be busy; ending the process stops that work.
    """
    return _run(data, upstream, note_node)
