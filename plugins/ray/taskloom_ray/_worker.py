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

from typing import Any

from taskloom.runners import (
    decode_call,
    dumps,
    encode_outcome,
    loads,
    outcome_without_data,
    run_task_call,
)

__all__ = ["run_call", "run_call_alone"]


#: Up to this size an outcome goes to the flow's process whole: Ray itself hands objects of
#: up to 100 KiB to their owner inline, so leaving them on the worker would save nothing.
INLINE_BYTES = 100 * 1024


def _run(data: bytes, upstream: tuple[Any, ...]) -> tuple[bytes, bytes]:
    """The outcome for the flow's process, and the whole outcome for downstream runs."""
    call = decode_call(data)
    outcome = run_task_call(call, *[loads(u) if type(u) is bytes else u for u in upstream])
    whole = encode_outcome(call, outcome)
    if len(whole) <= INLINE_BYTES:
        return whole, whole
    return dumps(outcome_without_data(outcome)), whole


def run_call(data: bytes, *upstream: Any) -> tuple[bytes, bytes]:
    """Run one pickled call here (see `taskloom.runners.CallEncoder`); ``upstream`` are the outcomes Ray resolved."""
    return _run(data, upstream)


def run_call_alone(data: bytes, *upstream: Any) -> tuple[bytes, bytes]:
    """`run_call` for a worker process that Ray ends after the call (``max_calls=1``).

    Used for tasks with a ``timeout_seconds``: the engine reports TimedOut at the timeout and
    abandons the task's thread, which may still be busy; ending the process stops that work.
    """
    return _run(data, upstream)
