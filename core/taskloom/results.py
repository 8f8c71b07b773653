"""Result storage and serialization: the protocols plugins implement.

A `ResultStorage` keeps bytes under string keys (a directory, a bucket, memory); a
`Serializer` turns values into bytes and back. Both are chosen by name
(``result_storage="local-file"``, ``result_serializer="json"``) from what plugins register.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from . import plugins

__all__ = [
    "PersistedResult",
    "ResultCorrupt",
    "ResultStorage",
    "Serializer",
    "atomic_write_file",
    "get_result_storage",
    "get_serializer",
    "read_record",
    "write_record",
]


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


# -- result records: what a persisted result looks like in a storage --------------------------

_RECORD_VERSION = 1
_storages: dict[tuple[Any, ...], ResultStorage] = {}
_storages_lock = threading.Lock()


class ResultCorrupt(Exception):
    """A persisted result that does not read back as it was written (checksum, format)."""


def atomic_write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a local file so that a reader sees the old content or all the new.

    For storage plugins: the bytes go to a temporary file in the same directory (so the
    rename cannot cross file systems), are flushed to disk, and are renamed over ``path``.
    A failure or an interrupt leaves the old file and no temporary one. The file gets the
    permissions a plain ``open(path, "wb")`` would give it (the process umask), not the
    owner-only ones of a temporary file.
    """
    directory, name = os.path.split(os.fspath(path))
    os.makedirs(directory or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@functools.cache
def _umask() -> int:
    # Read once: os.umask can only be read by setting it, which is not thread-safe.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resolve_storage(
    spec: Any, path: str | None, options: Mapping[str, Mapping[str, Any]] | None = None
) -> ResultStorage:
    """A storage from a task option or setting: an instance, or a registered name.

    A name is built once per process and set of options, and that one instance serves every
    task run and flow run of the process, from several threads at once. It gets its own
    ``[storages.NAME]`` options (``options[name]``), and ``path`` (the ``results.path``
    setting) when it takes a ``path`` and its section sets none.
    """
    if not isinstance(spec, str):
        return spec  # type: ignore[no-any-return]
    own = dict(options.get(spec, ())) if options else {}
    key = (spec, path, repr(sorted(own.items())) if own else "")
    storage = _storages.get(key)
    if storage is None:
        with _storages_lock:
            storage = _storages.get(key)
            if storage is None:
                from . import _sections

                factory = plugins.lookup("result_storage", spec).load()
                if path is not None and "path" not in own and _sections.accepts(factory, "path"):
                    own["path"] = path
                storage = _sections.build("storages", spec, factory, own, ", ".join(own))
                _storages[key] = storage
    return storage


def resolve_serializer(spec: Any) -> tuple[str, Serializer]:
    """A serializer and the name written in the record (``"custom:<qualname>"`` for instances)."""
    if isinstance(spec, str):
        return spec, get_serializer(spec)
    return f"custom:{type(spec).__qualname__}", spec


def write_record(
    storage: ResultStorage, key: str, serializer_name: str, payload: bytes, expires: float | None
) -> None:
    """Write one result: a JSON header line with the payload's checksum, then the payload."""
    header = {
        "v": _RECORD_VERSION,
        "serializer": serializer_name,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "created": time.time(),
        "expires": expires,
    }
    storage.write(key, json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload)


def read_record(storage: ResultStorage, key: str) -> tuple[dict[str, Any], bytes]:
    """The header and payload under ``key``: `KeyError` if none, `ResultCorrupt` if damaged."""
    data = storage.read(key)
    head, sep, payload = data.partition(b"\n")
    try:
        header = json.loads(head) if sep else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("v") != _RECORD_VERSION:
        raise ResultCorrupt(f"The result stored under {key!r} is not a taskloom result record.")
    if header.get("size") != len(payload) or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ResultCorrupt(
            f"The result stored under {key!r} does not match its checksum: it was cut short or "
            "changed after it was written. It was not loaded; delete it or refresh the cache."
        )
    return header, payload


class PersistedResult:
    """A result in a storage, loaded when first asked for (`State.result()` calls the loader).

    The value, when this process already has it, is kept beside the reference and travels
    with it, so a downstream run on another worker needs no shared storage to get it.
    """

    __slots__ = ("_loaded", "_value", "key", "serializer", "storage")

    def __init__(
        self, storage: ResultStorage, key: str, serializer: Any, value: Any = None, loaded: bool = False
    ) -> None:
        self.storage = storage
        self.key = key
        self.serializer = serializer
        self._value = value
        self._loaded = loaded

    def __repr__(self) -> str:
        return f"PersistedResult(key={self.key!r}, storage={self.storage!r})"

    def __reduce__(self) -> Any:
        return (PersistedResult, (self.storage, self.key, self.serializer, self._value, self._loaded))

    def __taskloom_load__(self) -> Any:
        if not self._loaded:
            header, payload = read_record(self.storage, self.key)
            serializer = self.serializer
            if serializer is None or isinstance(serializer, str):
                serializer = get_serializer(serializer or header["serializer"])
            self._value = serializer.loads(payload)
            self._loaded = True
        return self._value
