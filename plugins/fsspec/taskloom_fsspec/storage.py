"""`FsspecStorage`: taskloom results under any fsspec URL.

A storage that every worker of a cluster can reach (a bucket, a shared directory) is what makes
a result persisted on one worker loadable on another, and a cache entry written by one flow run
a hit for the next one, wherever it runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn

from .atomic import Writer, write_local, writer_for
from .errors import explain, missing_backend, unknown_protocol

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

__all__ = ["FsspecStorage"]


class FsspecStorage:
    """Results as objects (or files) under ``path``, any URL fsspec can open.

    ``path`` is a URL such as ``s3://bucket/prefix``, ``gs://bucket/prefix``,
    ``file:///shared/results`` or ``memory://results``; a key ``a/b`` is stored at
    ``path + "/a/b"``. ``storage_options`` go to the fsspec file system untouched (for S3:
    ``key``, ``secret``, ``profile``, ``client_kwargs={"endpoint_url": ...}``); without them
    the backend reads its usual environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``).

    Writes are whole or nothing; how each backend gets there is in `taskloom_fsspec.atomic`:
    one PUT (or a completed multipart upload) on object stores, a temporary file renamed with
    `os.replace` on ``file://``, one dictionary assignment on ``memory://``, and a temporary
    name moved with ``fs.mv`` on other backends (as atomic as their rename).

    fsspec is imported when the storage is built, never when the plugin loads. The instance
    pickles as its path and options, and rebuilds its file system after a fork, so it can be
    shipped to Dask, Ray or process workers.
    """

    def __init__(self, path: str, storage_options: dict[str, Any] | None = None) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(
                f"The fsspec result storage needs a URL as path (such as 's3://bucket/prefix'), "
                f"got {path!r}."
            )
        self.path: str = os.fspath(path)
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        self._pid = -1
        self._fs: AbstractFileSystem | None = None
        self._root = ""
        self._writer: Writer | None = None
        self._connect()  # now, so that a bad URL or a missing backend fails where it was named

    def __repr__(self) -> str:
        # Not the options: they may hold secrets.
        return f"FsspecStorage(path={self.path!r})"

    def __reduce__(self) -> tuple[type[FsspecStorage], tuple[str, dict[str, Any]]]:
        return (type(self), (self.path, self.storage_options))

    # -- the ResultStorage protocol ------------------------------------------------------------

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, whole or not at all."""
        location = self._location(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"FsspecStorage.write({key!r}, ...) needs bytes, got {type(data).__name__}: "
                "serialize the value first."
            )
        fs, writer = self._connect()
        try:
            writer(fs, location, bytes(data))
        except Exception as exc:
            self._reraise(exc, key, "write")

    def read(self, key: str) -> bytes:
        """The bytes under ``key``; `KeyError` if there are none."""
        location = self._location(key)
        fs, _ = self._connect()
        try:
            data: bytes = fs.cat_file(location)
            return data
        except (FileNotFoundError, IsADirectoryError) as exc:
            self._reraise_configuration(exc, key, "read")
            raise KeyError(key) from None
        except Exception as exc:
            self._reraise(exc, key, "read")

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (a file, not a prefix of other keys)."""
        location = self._location(key)
        fs, _ = self._connect()
        try:
            # Another process may have written the key since this file system listed its
            # parent; a cached listing must not hide it.
            fs.invalidate_cache(location)
            return bool(fs.info(location)["type"] == "file")
        except FileNotFoundError as exc:
            self._reraise_configuration(exc, key, "read")
            return False
        except Exception as exc:
            self._reraise(exc, key, "read")

    # -- helpers -------------------------------------------------------------------------------

    def _connect(self) -> tuple[AbstractFileSystem, Writer]:
        """The file system, built again in a forked child (async backends are not fork-safe)."""
        if self._fs is None or self._writer is None or self._pid != os.getpid():
            from fsspec.core import split_protocol, url_to_fs  # type: ignore[import-untyped]

            try:
                fs, root = url_to_fs(self.path, **self.storage_options)
            except ImportError as exc:
                protocol = split_protocol(self.path)[0] or "file"
                raise missing_backend(self.path, protocol, exc) from None
            except ValueError as exc:
                if "protocol" not in str(exc).lower():
                    raise
                raise unknown_protocol(self.path, exc) from None
            self._fs, self._root, self._writer = fs, root.rstrip("/"), writer_for(fs)
            self._pid = os.getpid()
        return self._fs, self._writer

    def _location(self, key: str) -> str:
        parts = key.replace("\\", "/").split("/") if isinstance(key, str) else []
        if not parts or not key or key.startswith(("/", "\\")) or ".." in parts:
            raise ValueError(
                f"Result key {key!r} is not a relative path inside the storage {self.path!r}: "
                "use a key without '..' that does not start with '/'."
            )
        return f"{self._root}/{key}"

    def _url(self, key: str) -> str:
        return f"{self.path.rstrip('/')}/{key}"

    def _reraise_configuration(self, exc: BaseException, key: str, action: str) -> None:
        error = explain(exc, self._url(key), action, local=self._writer is write_local)
        if error is not None:
            raise error from None

    def _reraise(self, exc: BaseException, key: str, action: str) -> NoReturn:
        self._reraise_configuration(exc, key, action)
        raise exc
