"""taskloom-sqlite: task results as rows of one SQLite file."""

from __future__ import annotations

from .storage import SQLiteStorage

__version__ = "0.1.0"

__all__ = ["SQLiteStorage"]
