"""A flow run's final state, by Prefect's rules: from what its body raised or returned, from
its task runs' states, and a subflow's ``wait_for`` that did not complete.
"""

from __future__ import annotations

import traceback
from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs

from .futures import _resolve_futures
from .states import _NO_DATA, Cancelled, Completed, Failed, Pending, State, StateType

if TYPE_CHECKING:
    from ._driver import _FlowRunDriver

__all__ = ["final_state", "not_ready"]


def final_state(driver: _FlowRunDriver, value: Any, error: BaseException | None) -> State:
    """Prefect's rule: an exception fails the run; a returned final state made by hand is the
    run's state; returned run states (futures become their final states, in the same shape)
    decide it by the aggregate rule and are its data; any other value completes it."""
    if error is not None:
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        return Failed(
            f"Flow run encountered an exception. {type(error).__name__}: {error}",
            exception=error,
            traceback=tb,
        )
    if value is None:
        return _aggregate(*driver.counts())
    names: dict[int, str] = {}
    resolved = _final_states(value, names)
    if isinstance(resolved, State) and resolved.run_id is None and resolved.is_final():
        return attrs.evolve(resolved)  # made by hand: the flow's own state (a copy, marked later)
    if isinstance(resolved, State):
        states = [resolved]
    elif isinstance(resolved, (list, tuple, set)) and resolved and all(isinstance(s, State) for s in resolved):
        states = list(resolved)
    else:
        return Completed(data=resolved)
    returned: Counter[StateType] = Counter(s.type for s in states)
    first = next(
        (s for s in states if s.is_failed() or s.is_crashed()),
        next((s for s in states if not s.is_final()), None),
    )
    failure: tuple[str | None, State] | None = None if first is None else (names.get(id(first)), first)
    return _aggregate(dict(returned), failure, data=resolved)


def _final_states(value: Any, names: dict[int, str]) -> Any:
    """``value`` with its futures waited for and made their final states; ``names`` gets
    each state's run name, by the state's id."""

    def to_state(future: Any) -> State:
        future.wait()
        state: State = future.state
        names[id(state)] = future.task_run.name
        return state

    return _resolve_futures(value, to_state)


def _aggregate(
    counts: dict[StateType, int], failure: tuple[str | None, State] | None, data: Any = _NO_DATA
) -> State:
    """Prefect's rule for many states: any failed fails, then cancelled, then not final."""
    total = sum(counts.values())
    failed = counts.get(StateType.FAILED, 0) + counts.get(StateType.CRASHED, 0)
    if failed:
        detail, exception = "", None
        if failure is not None:
            name, failed_state = failure
            run = f"task run {name!r}" if name else "a returned state"
            if name and name.startswith("subflow "):
                run = name
            detail = f"\nFirst failure, {run}: {failed_state.message}"
            if failed_state.traceback:
                detail += "\n" + failed_state.traceback.rstrip()
            exception = failed_state._exception_to_raise()
        return Failed(f"{failed}/{total} states failed.{detail}", exception=exception, data=data)
    cancelled = counts.get(StateType.CANCELLED, 0)
    if cancelled:
        return Cancelled(f"{cancelled}/{total} states cancelled.", data=data)
    not_final = counts.get(StateType.PENDING, 0) + counts.get(StateType.RUNNING, 0)
    if not_final:
        exception = failure[1]._exception_to_raise() if failure is not None else None
        return Failed(f"{not_final}/{total} states are not final.", exception=exception, data=data)
    return Completed("All states completed.", data=None if data is _NO_DATA else data)


def not_ready(wait_for: Any) -> State | None:
    """A subflow's ``wait_for``: wait for the runs in it; NotReady if one did not complete."""
    if wait_for is None:
        return None
    names: dict[int, str] = {}
    for item in _final_states(list(wait_for), names):
        if isinstance(item, State) and not item.is_completed():
            upstream = f"task run {names[id(item)]!r}" if id(item) in names else "an upstream run"
            return Pending(f"Upstream {upstream} did not reach a 'COMPLETED' state.", name="NotReady")
    return None
