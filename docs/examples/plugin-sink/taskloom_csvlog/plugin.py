"""The entry point of taskloom-csvlog: the sink's name and where its class lives."""

from __future__ import annotations

from taskloom import hookimpl

TASKLOOM_PLUGIN_API = 1


@hookimpl
def taskloom_register_log_sinks() -> dict[str, str]:
    # Its options are CSVSink's parameters: [sinks.csv] in taskloom.toml, TASKLOOM_SINKS_CSV_*.
    return {"csv": "taskloom_csvlog.sink:CSVSink"}
