"""What a worker sends back about a task run: its numbered events and its outcome.

Plain data, below the futures (which take the events) and the engine (which makes them), so
that both can name them without one importing the other.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .context import TaskRun
    from .states import State

__all__ = ["TaskRunEvent", "TaskRunOutcome"]


class TaskRunEvent(NamedTuple):
    """A state change (``old`` → ``new``) or a log ``record`` of one task run, numbered in order.

    A named tuple, not an attrs class: two or more are made per task run, on the hot path.

    A task run that submits tasks on a worker (see `taskloom._nested`) sends its children's
    creation and state changes in its own stream: ``run`` is then the child run, and
    ``parameters`` (set on the child's first event only) what it was given.
    """

    seq: int
    old: State | None = None
    new: State | None = None
    record: logging.LogRecord | None = None
    run: TaskRun | None = None
    parameters: dict[str, Any] | None = None


class TaskRunOutcome(NamedTuple):
    """What a worker hands back: the final state and the events the driver has not seen yet."""

    state: State
    events: tuple[TaskRunEvent, ...] = ()
