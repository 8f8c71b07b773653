"""`logging.Handler` sinks that format and write run logs with loguru."""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from loguru._logger import Core, Logger  # loguru's documented-by-example private pair

from taskloom.logging import run_prefix

__all__ = ["ConsoleSink", "FileSink", "JSONSink", "LoguruHandler"]

TEXT_FORMAT = (
    "<green>{extra[clock]}</green> | <level>{level: <7}</level> | "
    "<cyan>{extra[prefix]}</cyan> - <level>{message}</level>"
)

_RUN_FIELDS = ("flow_run_id", "flow_run_name", "task_run_id", "task_run_name")


def _private_logger() -> Any:
    # An independent loguru logger: loguru.logger.add/remove by the user do not touch it.
    return Logger(  # type: ignore[no-untyped-call]
        core=Core(),  # type: ignore[no-untyped-call]
        exception=None,
        depth=0,
        record=False,
        lazy=False,
        colors=False,
        raw=False,
        capture=True,
        patchers=[],
        extra={},
    )


def _write_stderr(message: str) -> None:
    sys.stderr.write(message)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LoguruHandler(logging.Handler):
    """A standard logging handler that writes each record to one loguru sink.

    ``level`` is accepted for the sinks' factories and not used: taskloom sets the level on
    its logger, so every record that reaches a sink is to be written.
    """

    def __init__(self, sink: Any, *, level: str | int = "INFO", **add_options: Any) -> None:
        super().__init__(logging.NOTSET)
        self._logger = _private_logger()
        self._sink_id = self._logger.add(sink, level=0, **add_options)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                message += "\n" + record.exc_text.rstrip()
            created = datetime.fromtimestamp(record.created, tz=UTC).astimezone()
            clock = created.strftime("%H:%M:%S.") + f"{int(record.msecs):03d}"
            extra: dict[str, Any] = {"prefix": run_prefix(record), "logger": record.name, "clock": clock}
            for field in _RUN_FIELDS:
                extra[field] = getattr(record, field, None)
            extra["json"] = self._json(record, created, message, extra)
            self._logger.bind(**extra).log(record.levelname, message)
        except Exception:
            self.handleError(record)

    def _json(self, record: logging.LogRecord, created: datetime, message: str, extra: dict[str, Any]) -> str:
        return ""

    def close(self) -> None:
        try:
            self._logger.remove(self._sink_id)
        except ValueError:
            pass
        super().close()


# loguru's own colours for TEXT_FORMAT: green clock, cyan prefix, the level's colour.
_LEVEL_COLOURS = {
    "DEBUG": "\x1b[34m\x1b[1m",
    "INFO": "\x1b[1m",
    "WARNING": "\x1b[33m\x1b[1m",
    "ERROR": "\x1b[31m\x1b[1m",
    "CRITICAL": "\x1b[41m\x1b[1m",
}
_RESET = "\x1b[0m"


class ConsoleSink(logging.Handler):
    """Run logs on standard error, in loguru's format and colours (only on a terminal).

    The console is the sink every flow has, and at INFO a task run writes three lines, so it
    is built for that rate:

    - each line is formatted here directly, with the clock text made once per second, not
      through a loguru logger (which costs several times more per line);
    - lines below WARNING are written by a writer thread, many lines per write, at most
      ``batch_seconds`` after they were logged; a write per line would cost a system call and
      a switch of the interpreter lock each, which on a busy thread pool is most of a
      task's cost at INFO. Warnings and errors, lines logged in a forked child and lines
      beyond ``max_backlog`` waiting are written at once, after those waiting, so a line
      is never lost to a crash that a warning foretold and memory does not grow with a
      backlog. Each flow run's end writes out what waits. ``batch_seconds=0`` writes each
      line at once.
    """

    def __init__(self, level: str | int = "INFO", batch_seconds: float = 0.02, max_backlog: int = 10_000) -> None:
        super().__init__(logging.NOTSET)
        self._colour = _stderr_is_tty()
        self._second = -1
        self._clock = ""
        self._batch_seconds = batch_seconds
        self._max_backlog = max_backlog
        self._waiting: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._clock = time.strftime("%H:%M:%S", time.localtime(second))
            self._second = second
        clock = f"{self._clock}.{int(record.msecs):03d}"
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            message += "\n" + record.exc_text.rstrip()
        level = record.levelname
        if not self._colour:
            return f"{clock} | {level: <7} | {run_prefix(record)} - {message}\n"
        tint = _LEVEL_COLOURS.get(level, "")
        return (
            f"\x1b[32m{clock}{_RESET} | {tint}{level: <7}{_RESET} | "
            f"\x1b[36m{run_prefix(record)}{_RESET} - {tint}{message}{_RESET}\n"
        )

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: appending to a deque is thread-safe, and the writer has its own.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if os.getpid() != self._pid:
                # A forked child: its own line at once, without the parent's lock or thread
                # (the parent writes what it left waiting).
                sys.stderr.write(line)
                return
            self._waiting.append(line)
            if (
                record.levelno >= logging.WARNING
                or not self._batch_seconds
                or self._closed
                or len(self._waiting) > self._max_backlog
            ):
                self.flush()
            elif not self._wake.is_set():
                if self._writer is None:
                    self._start_writer()
                self._wake.set()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Write every waiting line, in order, in one write to whatever sys.stderr is now
        (test runners swap it)."""
        if os.getpid() != self._pid:
            return  # a forked child: what waits is its parent's to write
        with self._write_lock:
            waiting, lines = self._waiting, []
            while waiting:
                lines.append(waiting.popleft())
            if lines:
                try:
                    sys.stderr.write("".join(lines))
                    sys.stderr.flush()
                except (OSError, ValueError, AttributeError):
                    pass  # a closed or missing stderr: nowhere to write, as for print()

    def _start_writer(self) -> None:
        with self._write_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_batches, name="taskloom-console", daemon=True)
                self._writer.start()
                atexit.register(self.flush)

    def _write_batches(self) -> None:
        while not self._closed:
            self._wake.wait()
            time.sleep(self._batch_seconds)  # let a batch gather: one write for many lines
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        atexit.unregister(self.flush)
        super().close()


class FileSink(LoguruHandler):
    """Run logs appended to the file ``[sinks.file] path`` names, without colour."""

    def __init__(self, path: str | None = None, level: str | int = "INFO") -> None:
        if not path:
            raise ValueError(
                "the 'file' log sink needs a path: set [sinks.file] path = \"taskloom.log\" "
                "or TASKLOOM_SINKS_FILE_PATH"
            )
        super().__init__(path, format=TEXT_FORMAT, colorize=False)


class JSONSink(LoguruHandler):
    """One JSON object per line, with the run ids, to ``[sinks.json] path`` (or stderr)."""

    def __init__(self, path: str | None = None, level: str | int = "INFO") -> None:
        super().__init__(path or _write_stderr, format="{extra[json]}", colorize=False)

    def _json(self, record: logging.LogRecord, created: datetime, message: str, extra: dict[str, Any]) -> str:
        return json.dumps(
            {
                "time": created.isoformat(timespec="milliseconds"),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                **{field: extra[field] for field in _RUN_FIELDS},
            }
        )
