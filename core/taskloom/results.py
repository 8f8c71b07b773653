"""Result storage and serialization: the protocols plugins implement.

A `ResultStorage` keeps bytes under string keys (a directory, a bucket, memory); a
`Serializer` turns values into bytes and back. Both are chosen by name
(``result_storage="local-file"``, ``result_serializer="json"``) from what plugins register.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from . import plugins

__all__ = ["ResultStorage", "Serializer", "get_result_storage", "get_serializer"]


@runtime_checkable
class ResultStorage(Protocol):
    """Bytes under keys. ``write`` must be atomic: a reader sees all of a value or none."""

    def write(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes:
        """The bytes under ``key``; `KeyError` if there are none."""
        ...

    def exists(self, key: str) -> bool: ...


@runtime_checkable
class Serializer(Protocol):
    """Values to bytes and back."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def get_result_storage(name: str, **options: Any) -> ResultStorage:
    """A storage by its registered name, built with ``options`` (``path=...``)."""
    return plugins.lookup("result_storage", name).load()(**options)  # type: ignore[no-any-return]


def get_serializer(name: str) -> Serializer:
    """A serializer by its registered name."""
    return plugins.lookup("serializer", name).load()()  # type: ignore[no-any-return]
