"""Result storages on this machine, and the standard serializers."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path
from typing import Any

from taskloom.results import atomic_write_file

__all__ = ["JSONSerializer", "LocalFileStorage", "MemoryStorage", "PickleSerializer"]


class MemoryStorage:
    """Results in this process's memory: for tests and for runs that need no files.

    Every instance, and every copy unpickled in this process, shares one dictionary; a
    worker process has its own. It takes no options.
    """

    _shared: dict[str, bytes] = {}
    _lock = threading.Lock()
    #: Only this process sees it: workers on other hosts (or processes) cannot read it.
    host_local = True

    def __repr__(self) -> str:
        return "MemoryStorage()"

    def write(self, key: str, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"MemoryStorage stores bytes, got {type(data).__name__}: serialize the value first.")
        with self._lock:
            self._shared[key] = bytes(data)

    def read(self, key: str) -> bytes:
        return self._shared[key]

    def exists(self, key: str) -> bool:
        return key in self._shared


class LocalFileStorage:
    """Results as files under ``path``, each written whole or not at all."""

    def __init__(self, path: str | os.PathLike[str] = ".taskloom/storage") -> None:
        given = Path(path).expanduser()
        #: A relative path is this host's working directory; an absolute one may be on a
        #: filesystem the workers share (the user's choice), so only the first is host-local.
        self.host_local = not given.is_absolute()
        # Resolved now: an instance given to a task travels to workers with this very path.
        self.path = given.absolute()

    def __repr__(self) -> str:
        return f"LocalFileStorage(path={str(self.path)!r})"

    def _file(self, key: str) -> Path:
        if not key or key.startswith(("/", "\\")) or ".." in Path(key).parts:
            raise ValueError(f"Result key {key!r} is not a relative path inside the storage.")
        return self.path / key

    def write(self, key: str, data: bytes) -> None:
        atomic_write_file(self._file(key), data)

    def read(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()


class PickleSerializer:
    """Python's pickle: any picklable value, read back only by Python."""

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class CloudpickleSerializer:
    """cloudpickle: also functions, lambdas and classes defined in a script."""

    def dumps(self, value: Any) -> bytes:
        import cloudpickle

        return cloudpickle.dumps(value)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class JSONSerializer:
    """JSON: plain data only, readable by anything."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)
