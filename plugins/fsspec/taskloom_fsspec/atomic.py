"""Whole-or-nothing writes, one strategy per kind of backend.

A reader must never see part of a result, and a write that fails or is interrupted must leave
the previous value in place. How to get that depends on what the backend guarantees:

- **Object stores** (``s3://``, ``gs://``, ``az://``, ...): one ``pipe_file`` call. An object
  becomes visible only when its upload completes: a single PUT is atomic, and so is a multipart
  (S3) or resumable (GCS) upload, which is published by its final "complete" request. An
  interrupted upload publishes nothing, so the old object stays. Concurrent writers of one key:
  the last upload to complete wins, whole.
- **Local files** (``file://``, plain paths): write a temporary file beside the target, flush
  and fsync it, then `os.replace` it onto the target. ``os.replace`` is one ``rename(2)``
  (atomic on POSIX, and a replacing ``MoveFileEx`` on Windows). We do not use
  ``LocalFileSystem.mv``: it is ``shutil.move``, which falls back to copy-then-delete when the
  rename fails (for example onto an existing file on Windows), and a reader could then see a
  half-copied file; fsspec's local transactions keep their temporary file in the system temp
  directory, so committing them can cross file systems and become a copy too.
- **Memory** (``memory://``): one ``pipe_file`` call, which builds the whole value and then
  stores it under the key in a single dictionary assignment.
- **Anything else** (sftp, hdfs, smb, ...): ``pipe_file`` to a temporary name beside the target,
  then ``fs.mv`` onto it. This is as atomic as that backend's rename; the docs say so.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskloom.results import atomic_write_file

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

__all__ = ["Writer", "writer_for"]

Writer = Callable[["AbstractFileSystem", str, bytes], None]

#: Protocols whose writes publish an object in one step (see the module's docstring).
OBJECT_STORES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "oci", "cos", "r2"}
)
SINGLE_STEP = OBJECT_STORES | {"memory"}


def _protocols(fs: AbstractFileSystem) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def writer_for(fs: AbstractFileSystem) -> Writer:
    """The write strategy for ``fs``."""
    from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

    if isinstance(fs, LocalFileSystem):
        return write_local
    if _protocols(fs) & SINGLE_STEP:
        return write_in_one_step
    return write_then_move


def write_in_one_step(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    fs.pipe_file(path, data)


def write_local(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    atomic_write_file(path, data)


def write_then_move(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    directory, name = posixpath.split(path)
    tmp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    if directory:
        fs.makedirs(directory, exist_ok=True)
    try:
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    except BaseException:
        try:
            fs.rm_file(tmp)
        except Exception:
            pass  # the temporary name is never read as a result; leaving it is harmless
        raise
