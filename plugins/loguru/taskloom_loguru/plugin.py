"""Entry point of taskloom-loguru: sink names and factories; loguru loads on first use."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_log_sinks() -> dict[str, str]:
    return {
        "console": "taskloom_loguru:ConsoleSink",
        "file": "taskloom_loguru:FileSink",
        "json": "taskloom_loguru:JSONSink",
    }
