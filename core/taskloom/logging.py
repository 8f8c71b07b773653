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

import contextlib
import functools
import logging
import sys
import threading
import traceback
from typing import Any

from ._current import _flow_run_driver, _task_run_recorder

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

    debug = functools.partialmethod(log, logging.DEBUG)
    info = functools.partialmethod(log, logging.INFO)
    warning = warn = functools.partialmethod(log, logging.WARNING)
    error = functools.partialmethod(log, logging.ERROR)
    exception = functools.partialmethod(log, logging.ERROR, exc_info=True)
    critical = functools.partialmethod(log, logging.CRITICAL)


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
    # Each sink gets its own [sinks.NAME] section, never another plugin's settings. The key
    # is made of the raw settings, so an unchanged configuration rebuilds nothing.
    key = (
        sink_names,
        level_name,
        tuple(repr(sorted(settings.section("sinks", n).items())) for n in sink_names),
        tuple(repr(settings.get(old)) for old, _ in _OLDER_SPELLINGS.values()),
    )
    root = logging.getLogger(ROOT)
    with _setup_lock:
        root.setLevel(level)
        if _installed is not None and _installed[0] == key:
            return level
        handlers = _build_sinks(sink_names, settings, level_name)
        _remove_installed(root)
        for handler in handlers:
            root.addHandler(handler)
        root.propagate = False
        _installed = (key, handlers)
    return level


#: Sink options that older versions read from [logging]: sink -> (its setting, its option).
_OLDER_SPELLINGS = {"file": ("logging.file", "path"), "json": ("logging.json_file", "path")}


def _build_sinks(names: tuple[str, ...], settings: Any, level_name: str) -> list[logging.Handler]:
    from . import _sections, plugins

    available = plugins.registered("log_sink")
    handlers: list[logging.Handler] = []
    try:
        for name in names:
            if name not in available:
                if name == "console":
                    handler: logging.Handler = logging.StreamHandler(sys.stderr)
                    handler.setFormatter(RunFormatter())
                    handlers.append(handler)
                    continue
                plugins.lookup("log_sink", name)  # raises, naming the installed sinks
            factory = available[name].load()
            options = _sections.section_options("sinks", name, factory, settings)
            sources = [f"{k} from {src}" for k, (_, src) in settings.section("sinks", name).items()]
            older = _OLDER_SPELLINGS.get(name)
            if older is not None and older[1] not in options and settings.get(older[0]) is not None:
                options[older[1]] = settings[older[0]]
                sources.append(f"{older[1]} from {older[0]} ({settings.sources[older[0]]})")
            if "level" not in options and _sections.accepts(factory, "level"):
                options["level"] = level_name
            sink = _sections.build("sinks", name, factory, options, ", ".join(sources))
            handlers.append(_GuardedSink(name, sink))
    except BaseException:
        for handler in handlers:
            handler.close()
        raise
    return handlers


class _GuardedSink(logging.Handler):
    """A plugin's sink on the ``taskloom`` logger, so that an exception it lets out of
    ``handle`` is reported (once per sink and process, on standard error) instead of
    reaching the code that logged: the flow goes on, and the other sinks get the record."""

    def __init__(self, name: str, sink: logging.Handler) -> None:
        super().__init__(logging.NOTSET)
        self.sink_name = name
        self.sink = sink

    def __repr__(self) -> str:
        return f"<sink {self.sink_name!r}: {self.sink!r}>"

    def handle(self, record: logging.LogRecord) -> Any:
        try:
            return self.sink.handle(record)
        except Exception as exc:
            _report_sink_error(self.sink_name, exc)
            return False

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def flush(self) -> None:
        try:
            self.sink.flush()
        except Exception as exc:
            _report_sink_error(self.sink_name, exc)

    def close(self) -> None:
        self.sink.close()
        super().close()


_failed_sinks: set[str] = set()


def _report_sink_error(name: str, exc: Exception) -> None:
    # Straight to stderr: logging it would hand it to the sinks, the failing one included.
    with _setup_lock:
        if name in _failed_sinks:
            return
        _failed_sinks.add(name)
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"taskloom: log sink {name!r} raised {type(exc).__name__}: {exc}; the record is "
            "dropped for that sink and the run goes on (said once per sink and process).\n"
        )


def flush_logging() -> None:
    """Have the sinks write out what they hold back: called as each flow run ends, so its
    lines are out when the flow call returns."""
    installed = _installed
    if installed is not None:
        for handler in installed[1]:
            handler.flush()


def reset_logging() -> None:
    """Remove the sinks `setup_logging` attached (tests, notebooks)."""
    with _setup_lock:
        _failed_sinks.clear()
        _remove_installed(logging.getLogger(ROOT))


def _remove_installed(root: logging.Logger) -> None:
    global _installed
    if _installed is not None:
        for handler in _installed[1]:
            root.removeHandler(handler)
            handler.close()
        _installed = None
