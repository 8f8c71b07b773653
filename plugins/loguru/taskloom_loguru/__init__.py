"""taskloom-loguru: run logs through loguru: a console, a file and a JSON-lines sink.

Sinks are registered as ``console``, ``file`` and ``json`` and chosen with
``[logging] sinks = ["console", "json"]`` (``TASKLOOM_LOGGING_SINKS=console,json``).
They write through a loguru logger of their own, so a program's own ``loguru.logger``
handlers neither print nor swallow taskloom's lines.
"""

from __future__ import annotations

from .sinks import ConsoleSink, FileSink, JSONSink, LoguruHandler

__version__ = "0.1.0"
__all__ = ["ConsoleSink", "FileSink", "JSONSink", "LoguruHandler"]
