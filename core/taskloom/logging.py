"""Run-aware logging: `get_run_logger`, and the sinks that show run logs.

Inside a task run, `get_run_logger` records log lines on whichever worker runs it; they reach
the flow's process as events and are handed, in order, to the standard ``logging`` logger
``taskloom.task_runs``. The flow's own lines go to ``taskloom.flow_runs``. Sinks are
`logging.Handler` objects on the ``taskloom`` logger, built by log-sink plugins (see
``taskloom_register_log_sinks``); without one, the core prints through the standard library in
the same format::

    21:24:38.117 | INFO    | Flow run 'phenomenal-spider-0c1e' - Created task run ...
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from typing import Any

from ._ctx import _flow_run_driver, _task_run_recorder

__all__ = ["MissingContextError", "RunFormatter", "get_run_logger", "run_prefix", "setup_logging"]

ROOT = "taskloom"


class MissingContextError(RuntimeError):
    """Raised when run-scoped API is used outside a flow run or task run."""


def run_prefix(record: logging.LogRecord) -> str:
    """What stands before the message: ``Task run '...'``, ``Flow run '...'`` or the logger."""
    if record.name == "taskloom.task_runs":
        return f"Task run {getattr(record, 'task_run_name', '?')!r}"
    if record.name == "taskloom.flow_runs":
        return f"Flow run {getattr(record, 'flow_run_name', '?')!r}"
    return record.name


class RunFormatter(logging.Formatter):
    """``HH:MM:SS.mmm | LEVEL   | <run> - message``, the line Prefect users know."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}"
        line = f"{stamp} | {record.levelname:<7} | {run_prefix(record)} - {record.getMessage()}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text.rstrip()
        return line


class _TaskRunLogger:
    """The logger a task sees: records become events of its run, on any worker."""

    __slots__ = ("_recorder", "name")

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder
        self.name = "taskloom.task_runs"

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's spelling
        return bool(level >= self._recorder.log_level)

    def log(self, level: int, msg: Any, *args: Any, exc_info: Any = None, **_: Any) -> None:
        exc_text = None
        if exc_info:
            if exc_info is True:
                exc_info = sys.exc_info()
            elif isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            if exc_info[0] is not None:
                exc_text = "".join(traceback.format_exception(*exc_info))
        self._recorder.log(level, str(msg), *args, exc_text=exc_text)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    warn = warning

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **kwargs)


def get_run_logger() -> logging.LoggerAdapter[logging.Logger] | _TaskRunLogger:
    """The logger of the current task run or flow run.

    Its lines carry the run's name and id and reach the flow's console and sinks, whichever
    runner and worker the task runs on. Raises `MissingContextError` outside a run.
    """
    recorder = _task_run_recorder.get()
    if recorder is not None:
        return _TaskRunLogger(recorder)
    driver = _flow_run_driver.get()
    if driver is not None:
        return driver.logger  # type: ignore[no-any-return]
    raise MissingContextError(
        "get_run_logger() was called outside a flow run or task run: call it inside a "
        "function decorated with @flow or @task, or use logging.getLogger() here."
    )


_setup_lock = threading.Lock()
_installed: tuple[tuple[Any, ...], list[logging.Handler]] | None = None


def setup_logging(settings: Any) -> int:
    """Attach the configured sinks to the ``taskloom`` logger; return the level in force.

    Called by each flow run in the flow's process. Handlers are rebuilt only when the sink
    settings changed since the last call.
    """
    global _installed
    level_name = str(settings["logging.level"]).upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        from .config import ConfigError

        raise ConfigError(
            f"logging.level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; "
            f"got {settings['logging.level']!r} ({settings.sources['logging.level']})."
        )
    sink_names = tuple(settings["logging.sinks"])
    # Every logging.* setting, a plugin's own included, goes to the sink factories.
    options = {
        key.split(".", 1)[1]: value
        for key, value in settings.values.items()
        if key.startswith("logging.") and key not in ("logging.sinks", "logging.level")
    }
    options["level"] = level_name
    key = (sink_names, tuple(sorted((k, repr(v)) for k, v in options.items())))
    root = logging.getLogger(ROOT)
    with _setup_lock:
        root.setLevel(level)
        if _installed is not None and _installed[0] == key:
            return level
        handlers = _build_sinks(sink_names, options)
        if _installed is not None:
            for handler in _installed[1]:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.propagate = False
        _installed = (key, handlers)
    return level


def _build_sinks(names: tuple[str, ...], options: dict[str, Any]) -> list[logging.Handler]:
    from . import plugins

    available = plugins.registered("log_sink")
    handlers: list[logging.Handler] = []
    for name in names:
        if name not in available:
            if name == "console":
                handler: logging.Handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(RunFormatter())
                handlers.append(handler)
                continue
            plugins.lookup("log_sink", name)  # raises, naming the installed sinks
        handlers.append(available[name].load()(**options))
    return handlers


def reset_logging() -> None:
    """Remove the sinks `setup_logging` attached (tests, notebooks)."""
    global _installed
    with _setup_lock:
        if _installed is not None:
            root = logging.getLogger(ROOT)
            for handler in _installed[1]:
                root.removeHandler(handler)
                handler.close()
            _installed = None
