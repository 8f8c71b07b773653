"""Tag concurrency limits: slots per tag, taken in the flow's process before a run reaches
the runner, so a limit holds however many workers there are.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._calls import TaskRunCall
    from .futures import TaskRunFuture

__all__ = ["Limits"]


class Limits:
    """Concurrency slots per tag, taken in the flow's process before a run reaches the runner."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.running: Counter[str] = Counter()
        self.waiting: deque[tuple[TaskRunCall, TaskRunFuture[Any]]] = deque()

    def limited(self, tags: frozenset[str]) -> list[str]:
        return [tag for tag in tags if tag in self.limits]

    def try_take(self, tags: list[str]) -> bool:
        if any(self.running[tag] >= self.limits[tag] for tag in tags):
            return False
        for tag in tags:
            self.running[tag] += 1
        return True

    def release(self, tags: list[str]) -> list[tuple[TaskRunCall, TaskRunFuture[Any]]]:
        for tag in tags:
            self.running[tag] -= 1
        ready = []
        for item in list(self.waiting):
            if self.try_take(self.limited(item[0].task_run.tags)):
                self.waiting.remove(item)
                ready.append(item)
        return ready
