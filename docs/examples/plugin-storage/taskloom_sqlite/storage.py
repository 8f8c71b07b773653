"""`SQLiteStorage`: results as rows of one SQLite file, each written in one transaction.

A storage may be pickled to a worker process, so it holds only its path: every operation
opens its own short-lived connection. SQLite connections may not cross threads, and opening
one costs tens of microseconds, far less than a task run.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["SQLiteStorage"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, data BLOB NOT NULL)"


class SQLiteStorage:
    """Bytes under string keys in one SQLite file, created on first write.

    ``path`` is the file (``results.sqlite``, ``runs.db``) or, when it has no suffix or is a
    folder, the folder that holds ``results.sqlite``. So it can share taskloom's
    ``results.path`` setting (``.taskloom/storage``) with the ``local-file`` storage.

    ``write`` is atomic: the row is replaced inside one ``BEGIN IMMEDIATE`` transaction, so a
    reader in any thread or process sees the old bytes or the new ones, never a mix, and a
    write that fails leaves the old bytes. ``timeout`` is how long a write waits for another
    writer's lock before it fails.
    """

    def __init__(self, path: str | os.PathLike[str] = ".taskloom/storage", timeout: float = 30.0) -> None:
        file = Path(path).expanduser()
        self.path = file / "results.sqlite" if file.is_dir() or not file.suffix else file
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SQLiteStorage(path={str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions, so the ones below are exactly ours.
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        # WAL lets readers go on while a writer commits; it is a property of the file.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(_SCHEMA)
        return connection

    def write(self, key: str, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"SQLiteStorage stores bytes, got {type(data).__name__}: serialize the value first.")
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(
                    "INSERT INTO results (key, data) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET data = excluded.data",
                    (key, bytes(data)),
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def read(self, key: str) -> bytes:
        row = self._select("SELECT data FROM results WHERE key = ?", key)
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def exists(self, key: str) -> bool:
        return self._select("SELECT 1 FROM results WHERE key = ?", key) is not None

    def _select(self, sql: str, key: str) -> tuple[Any, ...] | None:
        if not self.path.exists():  # reading must not create the file
            return None
        connection = self._connect()
        try:
            row: tuple[Any, ...] | None = connection.execute(sql, (key,)).fetchone()
        finally:
            connection.close()
        return row
