"""What a user wraps arguments and blocks in: `unmapped`, `allow_failure`, `quote`, `tags`,
and the `exponential_backoff` retry delay (Prefect's ``prefect.utilities.annotations`` and
friends). Re-exported by ``taskloom`` and ``taskloom.tasks``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["allow_failure", "exponential_backoff", "quote", "tags", "unmapped"]


class unmapped:  # noqa: N801 - Prefect's spelling, which our users already write
    """Wrap an argument of ``.map()`` so that every run gets it whole instead of one element."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class allow_failure:  # noqa: N801 - Prefect's spelling
    """Wrap a future passed to a task so the task runs even if that upstream run failed.

    The task then receives the upstream's value, or its exception if it did not complete.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class quote:  # noqa: N801 - Prefect's spelling
    """Wrap an argument so it is passed as it is: not searched for futures, not mapped over."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def unquote(self) -> Any:
        return self.value


_tags: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("taskloom_tags", default=frozenset())


@contextlib.contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add ``names`` to the tags of every task run created inside the ``with`` block."""
    token = _tags.set(_tags.get() | frozenset(names))
    try:
        yield _tags.get()
    finally:
        _tags.reset(token)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """A ``retry_delay_seconds`` that waits ``backoff_factor * 2**n`` seconds before retry n."""
    if not isinstance(backoff_factor, (int, float)) or backoff_factor < 0:
        raise ValueError(f"backoff_factor must be a number of at least 0, got {backoff_factor!r}.")

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(retries)]

    return delays
