"""`CSVSink`: a `logging.Handler` that appends one CSV row per run log record.

taskloom hands a sink every record of the flow's process, in order, after the records of task
runs have come back from their workers; each carries ``flow_run_name`` and ``flow_run_id`` and,
for task runs, ``task_run_name`` and ``task_run_id``. A sink only formats and writes.
"""

from __future__ import annotations

import csv
import datetime
import logging
import os
from pathlib import Path

__all__ = ["COLUMNS", "CSVSink"]

COLUMNS = (
    "time", "level", "logger", "flow_run_name", "flow_run_id",
    "task_run_name", "task_run_id", "message", "exception",
)


class CSVSink(logging.Handler):
    """Appends rows to ``path``, writing the header when the file is new.

    taskloom builds the sink with the options of its own section, ``[sinks.csv]`` in
    taskloom.toml (``TASKLOOM_SINKS_CSV_PATH`` in the environment), and with ``level``, the
    ``logging.level`` in force, because it takes one. Each row is flushed as it is written,
    so a crashed flow keeps its last lines.
    """

    def __init__(self, path: str | os.PathLike[str] = "taskloom-runs.csv", level: str = "INFO") -> None:
        super().__init__(level)
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(COLUMNS)
            self._file.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            self._writer.writerow((
                stamp.isoformat(timespec="milliseconds"),
                record.levelname,
                record.name,
                getattr(record, "flow_run_name", ""),
                getattr(record, "flow_run_id", ""),
                getattr(record, "task_run_name", ""),
                getattr(record, "task_run_id", ""),
                record.getMessage(),
                self._exception(record),
            ))
            self._file.flush()
        except Exception:
            self.handleError(record)

    @staticmethod
    def _exception(record: logging.LogRecord) -> str:
        # Task runs' tracebacks arrive as text; the flow's own arrive as exc_info.
        if record.exc_text:
            return record.exc_text
        if record.exc_info and record.exc_info[0] is not None:
            return logging.Formatter().formatException(record.exc_info)
        return ""

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._file.closed:
                self._file.close()
        super().close()
